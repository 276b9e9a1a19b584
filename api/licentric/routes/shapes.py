"""Shapes shared by the routes: the error body for the OpenAPI document, the
error responses every authenticated route can give, the Idempotency-Key
header every POST honours (app.provide_tenant_db), and metadata in request
bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar.enums import ParamType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIType, Operation, Parameter, Schema


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
        410: "The cursor is too old to follow (cursor_expired): take a new snapshot",
        422: "Invalid parameter, or an Idempotency-Key reused with another request",
        429: "Rate limited; see Retry-After",
        502: "Stripe failed or could not be reached (stripe_unavailable)",
        503: "Busy, or not configured here (not_configured); retry",
    }
    wanted = sorted({400, 401, 403, 429, 503, *statuses})
    return {s: ResponseSpec(ErrorBody, description=described[s], generate_examples=False) for s in wanted}


IDEMPOTENCY_KEY = Parameter(
    name="Idempotency-Key",
    param_in=ParamType.HEADER,
    required=False,
    schema=Schema(type=OpenAPIType.STRING, min_length=1, max_length=255),
    description="Makes the request safe to retry: a repeat by the same API key or agent within 24 hours gets "
    "the first answer (with `Idempotent-Replayed: true`); 409 while the first is still running, 422 with "
    "another payload.",
)


@dataclass
class IdempotentOperation(Operation):
    """The OpenAPI operation of a POST: documents the Idempotency-Key header."""

    def __post_init__(self) -> None:
        self.parameters = [*(self.parameters or []), IDEMPOTENCY_KEY]


# The caps are checked in SQL (private.write_metadata, decision 58); this only
# documents them.
Metadata = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="Your own key-value data: at most 50 keys of at most 40 characters; a string value of at "
        "most 500 characters, any other JSON value at most 500 characters of JSON."
    ),
]
