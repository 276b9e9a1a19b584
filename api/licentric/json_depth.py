"""The JSON depth guard: a request body nested deeper than MAX_DEPTH is refused
before anything parses it. Python's parsers give up with a RecursionError
(about 1,000 levels), PostgreSQL's jsonb input with 54001 (stack depth), and no
body of this API needs more than a few levels."""

from __future__ import annotations

from typing import Any

from litestar import Request

from licentric.errors import ApiError

MAX_DEPTH = 32

# Bodies of these types are parsed as forms (the portal's), never as JSON.
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

# Every byte but quotes and brackets, for bytes.translate to delete; then braces read as brackets.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_BRACES_AS_BRACKETS = bytes.maketrans(b"{}", b"[]")


def too_deep(body: bytes) -> bool:
    """Whether the brackets and braces of body nest deeper than MAX_DEPTH outside strings. Byte
    operations only (no per-byte Python loop): a 1.4 MB batch of 10,000 usage events takes ~25 ms."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:  # most bodies: no need to look closer
        return False
    # Without escaped backslashes and quotes, every '"' left opens or closes a string: keep what is outside.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.translate(None, _NOT_STRUCTURE).split(b'"')[::2])
    brackets = outside.translate(_BRACES_AS_BRACKETS)
    # Each pass deletes the innermost pairs, so a pair left after MAX_DEPTH passes encloses more levels.
    for _ in range(MAX_DEPTH):
        inner_removed = brackets.replace(b"[]", b"")
        if len(inner_removed) == len(brackets):
            break
        brackets = inner_removed
    first_open = brackets.find(b"[")
    return first_open != -1 and brackets.rfind(b"]") > first_open


async def refuse_deep_json(request: Request[Any, Any, Any]) -> None:
    """The app's before_request hook: 400 for a body nested deeper than MAX_DEPTH, before the
    handler's parameters (and so the body) are parsed."""
    if request.headers.get("content-type", "").lower().startswith(FORM_TYPES):
        return
    if too_deep(await request.body()):
        raise ApiError("LPAYL", f"the JSON body is nested deeper than {MAX_DEPTH} levels")
