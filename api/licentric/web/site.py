"""What the portal and the console share as web sites: the page headers, error pages, cookies and CSRF
tokens, the form and id parsing, and mail built from templates. Each site subclasses Site with its own
templates, cookie names and what a page knows of its visitor (decisions 47, 76)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from litestar import Request, Response
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import CacheControlHeader, Cookie
from litestar.exceptions import HTTPException
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler
from psycopg_pool import PoolTimeout

from licentric.errors import REGISTRY, STANDARD, ApiError
from licentric.mail import build_message, mailer_for, parse_address, send_quietly
from licentric.settings import Settings
from licentric.web.render import STATIC, environment
from licentric.web.security import CookieJar, Keys, digest, new_secret

log = logging.getLogger("licentric.web")

# On every page: never cached (pages carry CSRF tokens and the link's token), never sent as a Referer
# (the confirm page's URL holds the token; a branded logo is fetched from elsewhere), never framed, and
# nothing runs: there is no script at all.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action 'self' https:; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

PAGE_ROWS = 50  # rows of a list on one page


class WebError(Exception):
    """A page to answer with instead of the one asked for."""

    def __init__(self, status: int, title: str, message: str, face: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.face = face


class SignInRequired(Exception):
    """No session, or one SQL no longer honours (its authenticate function's LAUTH)."""


NOT_FOUND = "There is nothing here, or it is not yours to see."


def database_error(exc: psycopg.Error, face: dict[str, Any] | None = None) -> WebError:
    """A database error as a page: the registry's status and SQL's message for a refusal, a generic page
    for anything else."""
    sqlstate = exc.sqlstate or ""
    if sqlstate == "LNTFD":
        return WebError(404, "Not found", NOT_FOUND, face)
    kind = REGISTRY.get(sqlstate) or STANDARD.get(sqlstate)
    if kind is not None and kind.status < 500:
        return WebError(kind.status, "That did not work", exc.diag.message_primary or kind.code, face)
    if kind is not None or isinstance(exc, psycopg.OperationalError):
        return WebError(503, "Busy", "The service is busy. Please try again in a moment.", face)
    log.error("unmapped database error %s in a page", sqlstate, exc_info=exc)
    return WebError(500, "Something went wrong", "An internal error occurred; it has been logged.", face)


def web_error(exc: Exception) -> WebError:
    """Any exception a page handler raised, as the page to answer with."""
    if isinstance(exc, WebError):
        return exc
    if isinstance(exc, psycopg.Error):
        return database_error(exc)
    if isinstance(exc, ApiError):
        # Stripe's failures (stripe_api.py: 422 refused, 502 unreachable, 503 not configured), a webhook
        # URL the SSRF guard refuses (422).
        title = "That did not work" if exc.kind.status < 500 else "Not available right now"
        return WebError(exc.kind.status, title, exc.message)
    if isinstance(exc, PoolTimeout):
        return WebError(503, "Busy", "The service is busy. Please try again in a moment.")
    if isinstance(exc, HTTPException):
        status = exc.status_code
        title = "Not found" if status == 404 else "That did not work"
        return WebError(status, title, "There is nothing here." if status == 404 else str(exc.detail))
    log.exception("unhandled error in a page", exc_info=exc)
    return WebError(500, "Something went wrong", "An internal error occurred; it has been logged.")


async def form_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def uuid_or_404(value: str | None, *, missing_ok: bool = False) -> UUID | None:
    """A UUID from a URL or form; anything else is a 404 (a page that cannot exist)."""
    if not value and missing_ok:
        return None
    try:
        return UUID(value or "")
    except ValueError:
        raise WebError(404, "Not found", NOT_FOUND) from None


def page_cut(rows: list[dict[str, Any]], key: str = "id") -> tuple[list[dict[str, Any]], str | None]:
    """A keyset page of PAGE_ROWS + 1 rows asked for: its rows and the cursor of the next page, if any."""
    if len(rows) > PAGE_ROWS:
        return rows[:PAGE_ROWS], str(rows[PAGE_ROWS - 1][key])
    return rows, None


class Site:
    """What every request of one site shares, made once per app: settings, templates, cookie names, keys
    and the mail backend. name is the site's cookie name ("portal", "console")."""

    def __init__(self, settings: Settings, name: str, templates: Path) -> None:
        self.settings = settings
        self.env = environment(templates)
        self.cookies = CookieJar(settings.portal_secure_cookies, name)
        self.keys = Keys(settings.secret_key) if settings.secret_key else None
        self.mailer = mailer_for(settings.mail_url)
        self.sender = parse_address(settings.mail_from)

    def require_keys(self) -> Keys:
        if self.keys is None:
            raise WebError(
                503,
                "Not available",
                "These pages are not configured on this server (LICENTRIC_SECRET_KEY is not set).",
            )
        return self.keys

    # Rendering.

    def defaults(self, context: dict[str, Any]) -> dict[str, Any]:
        """What every page of the site has in its context, from what the handler gave."""
        return {}

    def page(
        self,
        template: str,
        *,
        status: int = 200,
        cookies: list[Cookie] | None = None,
        background: BackgroundTask | None = None,
        **context: Any,
    ) -> Response[str]:
        values = {"session": None, "csrf": None, "error": None, "notice": None, "section": None, **context}
        values = {**values, **self.defaults(values)}
        return Response(
            self.env.get_template(template).render(values),
            status_code=status,
            media_type="text/html",
            headers=PAGE_HEADERS,
            cookies=cookies or [],
            background=background,
        )

    def see_other(self, path: str, cookies: list[Cookie] | None = None) -> Redirect:
        return Redirect(path, status_code=303, headers=PAGE_HEADERS, cookies=cookies or [])

    def error_page(self, error: WebError) -> Response[str]:
        return self.page(
            "error.html", status=error.status, face=error.face, title=error.title, message=error.message
        )

    # Sessions and CSRF; scope is what a token is bound to besides its cookie (Keys).

    def login_cookie(self, request: Request[Any, Any, Any]) -> tuple[str, list[Cookie]]:
        """The pre-session cookie's value, and the cookie to set when the browser has none yet."""
        value = request.cookies.get(self.cookies.login_name)
        if value:
            return value, []
        value = new_secret()
        return value, [self.cookies.login(value)]

    def check_login_csrf(self, request: Request[Any, Any, Any], scope: str, form: dict[str, str]) -> None:
        keys = self.require_keys()
        value = request.cookies.get(self.cookies.login_name)
        if not value or not keys.same(keys.login_csrf(scope, value), form.get("csrf_token")):
            raise WebError(
                403,
                "Please try again",
                "This form has expired or did not come from this site. Reload the page (your browser must "
                "accept cookies from this site) and send it again.",
            )

    def check_session_csrf(self, request: Request[Any, Any, Any], scope: str, form: dict[str, str]) -> bytes:
        """The session hash, once the form's CSRF token proves it came from a page of this session."""
        keys = self.require_keys()
        value = request.cookies.get(self.cookies.session_name)
        session_hash = digest(value) if value else None
        if session_hash is None or not keys.same(
            keys.session_csrf(scope, session_hash), form.get("csrf_token")
        ):
            raise WebError(
                403,
                "Please try again",
                "This form has expired or did not come from this site. Go back, reload the page and send "
                "it again.",
            )
        return session_hash

    def session_hash(self, request: Request[Any, Any, Any]) -> bytes:
        value = request.cookies.get(self.cookies.session_name)
        if not value:
            raise SignInRequired
        return digest(value)

    async def signed_in_context(
        self,
        scope: str,
        session_hash: bytes,
        run: Awaitable[dict[str, Any]],
        face: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> dict[str, Any]:
        """The context run (a signed-in transaction) made, with the session's CSRF token. The session's
        LAUTH is SignInRequired; other database errors become error pages (with face(), if any)."""
        try:
            context = await run
        except psycopg.Error as exc:
            if exc.sqlstate == "LAUTH":
                raise SignInRequired from exc
            raise database_error(exc, face()) from exc
        context["csrf"] = self.require_keys().session_csrf(scope, session_hash)
        return context

    # Mail, sent by background tasks after the page has answered.

    async def send(
        self,
        template: str,
        *,
        to: str,
        to_name: str | None,
        subject: str,
        sender_name: str,
        what: str,
        **context: Any,
    ) -> None:
        """Build a message from email/<template>.txt and .html and send it, logging a failure."""
        message = build_message(
            sender=self.sender,
            sender_name=sender_name,
            to=to,
            to_name=to_name,
            subject=subject,
            text=self.env.get_template(f"email/{template}.txt").render(context),
            html=self.env.get_template(f"email/{template}.html").render(context),
        )
        await send_quietly(self.mailer, message, what)


def static_files(path: str, name: str) -> ControllerRouterHandler:
    """The shared stylesheet, served under a site's own path."""
    return create_static_files_router(
        path=path,
        directories=[STATIC],
        name=name,
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=3600),
    )
