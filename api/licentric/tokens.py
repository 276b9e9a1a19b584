"""API keys and agent tokens as the web layer sees them (decision 1): a bearer credential, and whether it is
well formed. The format is checked here so that a malformed or mistyped key is refused without taking a
database connection; SQL (private.token_account, functions/10_api_keys.sql) stays the authority, and
tests/python/test_rate_limits.py feeds both the same keys so the two cannot drift apart."""

from __future__ import annotations

import hashlib
from typing import Any

from litestar import Request

PREFIXES = ("lic_sk_", "lic_pk_", "lic_ak_")
HEX = frozenset("0123456789abcdef")


def bearer_token(request: Request[Any, Any, Any]) -> str:
    """The credential of `Authorization: Bearer <token>`, or '' without one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def well_formed(token: str) -> bool:
    """A prefix, the account id (32 hex), 40 characters and the 8-hex checksum of all before it."""
    return (
        len(token) == 87
        and token[:7] in PREFIXES
        and HEX.issuperset(token[7:39])
        and hashlib.sha256(token[:79].encode()).hexdigest()[:8] == token[79:]
    )
