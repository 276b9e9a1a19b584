"""The web pages' secrets and cookies (the portal's and the console's): link tokens and session ids (made
here, stored in SQL only as their sha256), CSRF tokens, and the keyed hash of a client address (what SQL
counts link requests by).

Every key is derived from LICENTRIC_SECRET_KEY with HMAC and a label of its own, so the CSRF key, the
address key and the key that encrypts Stripe credentials are never the same bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from litestar.datastructures import Cookie

SESSION_MAX_AGE = 12 * 3600  # the absolute timeout; SQL enforces it and the 30-minute idle one
LOGIN_COOKIE_MAX_AGE = 12 * 3600


def new_secret() -> str:
    """32 random bytes, URL-safe base64: a link token or a session id."""
    return secrets.token_urlsafe(32)


def digest(value: str) -> bytes:
    """What SQL stores of a token or session id: its sha256."""
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True)
class CookieJar:
    """A site's two cookies (site is "portal" or "console"). With Secure (the default) they carry the
    __Host- prefix, so the browser accepts them only from this origin over https, with Path=/ and no
    Domain; over plain http (a local trial, LICENTRIC_PORTAL_SECURE_COOKIES=false) the prefix would make
    browsers drop them, so the names go without it."""

    secure: bool
    site: str

    @property
    def session_name(self) -> str:
        name = f"licentric_{self.site}"
        return f"__Host-{name}" if self.secure else name

    @property
    def login_name(self) -> str:
        """The pre-session cookie the sign-in forms' CSRF tokens are bound to."""
        return f"{self.session_name}_login"

    def _cookie(self, name: str, value: str, max_age: int) -> Cookie:
        return Cookie(
            key=name,
            value=value,
            max_age=max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def session(self, value: str) -> Cookie:
        return self._cookie(self.session_name, value, SESSION_MAX_AGE)

    def login(self, value: str) -> Cookie:
        return self._cookie(self.login_name, value, LOGIN_COOKIE_MAX_AGE)

    def expired(self, name: str) -> Cookie:
        """Deletes a cookie; with the same attributes, or a browser refuses a __Host- one."""
        return self._cookie(name, "", 0)


class Keys:
    """HMACs with keys derived from the service's secret key."""

    def __init__(self, secret_key: bytes) -> None:
        self._csrf = hmac.new(secret_key, b"licentric portal csrf", hashlib.sha256).digest()
        self._address = hmac.new(secret_key, b"licentric portal address", hashlib.sha256).digest()

    def address_hash(self, address: str) -> bytes:
        """The client address as SQL counts it (service.request_portal_login's ip_hash): keyed, so the table
        holds no address and none can be found by hashing every IPv4 address."""
        return hmac.new(self._address, address.encode(), hashlib.sha256).digest()

    def session_csrf(self, scope: str, session_hash: bytes) -> str:
        """The CSRF token of a signed-in form: bound to the session and its scope (a portal's slug, or
        "/console", which no slug can be)."""
        mac = hmac.new(self._csrf, b"session\x00" + scope.encode() + b"\x00" + session_hash, hashlib.sha256)
        return mac.hexdigest()

    def login_csrf(self, scope: str, login_cookie: str) -> str:
        """The CSRF token of the sign-in and confirm forms: bound to the pre-session cookie."""
        mac = hmac.new(
            self._csrf, b"login\x00" + scope.encode() + b"\x00" + digest(login_cookie), hashlib.sha256
        )
        return mac.hexdigest()

    @staticmethod
    def same(expected: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(expected.encode(), given.encode())
