"""Response shapes shared by the routes: the error body for the OpenAPI
document, and the error responses every authenticated route can give."""

from __future__ import annotations

import msgspec
from litestar.openapi import ResponseSpec


class ErrorDetail(msgspec.Struct):
    type: str
    code: str
    message: str
    param: str | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the given error statuses, plus those of any authenticated call."""
    described = {
        400: "Malformed request",
        401: "Missing, malformed, unknown, revoked or expired API key",
        402: "A plan limit or budget is exhausted",
        403: "The key may not do this (publishable key)",
        404: "No such object in this account",
        409: "Illegal state change, or an Idempotency-Key still in use",
        422: "Invalid parameter, or an Idempotency-Key reused with another request",
        429: "Rate limited; see Retry-After",
        503: "Busy; retry",
    }
    wanted = sorted({400, 401, 403, 429, 503, *statuses})
    return {s: ResponseSpec(ErrorBody, description=described[s], generate_examples=False) for s in wanted}
