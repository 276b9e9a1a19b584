"""The error registry: every SQLSTATE the database raises, mapped to an HTTP
status and a stable machine-readable code, and the one handler that turns any
exception into Stripe's error body {"error": {type, code, message, param}}.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from prometheus_client import Counter
from psycopg_pool import PoolTimeout

from licentric.rate_limit import retry_after

log = logging.getLogger("licentric")


@dataclass(frozen=True)
class ErrorKind:
    status: int
    type: str
    code: str


# Licentric's own SQLSTATEs (class L). functions/ may raise only these; a test
# scans functions/ for codes missing here.
REGISTRY: dict[str, ErrorKind] = {
    "LAUTH": ErrorKind(401, "authentication_error", "unauthenticated"),
    "LDNID": ErrorKind(403, "permission_error", "forbidden"),
    "LNTFD": ErrorKind(404, "invalid_request_error", "resource_missing"),
    "LSTAT": ErrorKind(409, "invalid_request_error", "invalid_state"),
    "LIDEM": ErrorKind(409, "idempotency_error", "idempotency_key_in_use"),
    "LIDPL": ErrorKind(422, "idempotency_error", "idempotency_key_reused"),
    "LINVL": ErrorKind(422, "invalid_request_error", "invalid_parameter"),
    "LPLAN": ErrorKind(402, "invalid_request_error", "plan_limit_reached"),
    "LBUDG": ErrorKind(402, "invalid_request_error", "budget_exhausted"),
    "LRATE": ErrorKind(429, "rate_limit_error", "rate_limited"),
    "LACCT": ErrorKind(403, "permission_error", "account_inactive"),
    "LGONE": ErrorKind(410, "invalid_request_error", "cursor_expired"),
    # Raised by the Python layer only (routes/stripe.py, stripe_api.py, json_depth.py).
    "LSIGN": ErrorKind(400, "invalid_request_error", "signature_invalid"),
    "LPAYL": ErrorKind(400, "invalid_request_error", "payload_invalid"),
    "LSKEY": ErrorKind(422, "invalid_request_error", "stripe_key_rejected"),
    "LSREQ": ErrorKind(422, "invalid_request_error", "stripe_request_refused"),
    "LSUNV": ErrorKind(502, "api_error", "stripe_unavailable"),
    "LCONF": ErrorKind(503, "api_error", "not_configured"),
}

# Standard SQLSTATEs a bad request can still reach.
STANDARD: dict[str, ErrorKind] = {
    "23505": ErrorKind(409, "invalid_request_error", "already_exists"),
    "23503": ErrorKind(422, "invalid_request_error", "invalid_reference"),
    "23502": ErrorKind(422, "invalid_request_error", "missing_parameter"),
    "23514": ErrorKind(422, "invalid_request_error", "invalid_parameter"),
    "40001": ErrorKind(503, "api_error", "try_again"),
    "40P01": ErrorKind(503, "api_error", "try_again"),
    "55P03": ErrorKind(503, "api_error", "try_again"),
    "57014": ErrorKind(503, "api_error", "try_again"),
}

# A data exception (class 22: a value out of range, malformed, too long, a \u0000 in jsonb) or 54001
# (nested too deep) that PostgreSQL raised while converting a bound parameter of the call, i.e. a request
# value, to its parameter's type, before any function ran: bad input, 422. Its CONTEXT then ends with
# "unnamed portal parameter $N = ...". The same codes raised inside a function are our code's (functions
# check the request values they parse themselves with LINVL first), so those stay unmapped: a logged 500
# (decision 63).
BAD_VALUE = ErrorKind(422, "invalid_request_error", "invalid_parameter")
_BOUND_PARAMETER = re.compile(r'portal (?:"[^"]*" )?parameter \$\d+')


def _bad_request_value(exc: psycopg.Error) -> bool:
    sqlstate = exc.sqlstate or ""
    return (sqlstate.startswith("22") or sqlstate == "54001") and bool(
        _BOUND_PARAMETER.search(exc.diag.context or "")
    )


# Raised by a transaction that may succeed when run again.
RETRYABLE = frozenset({"40001", "40P01"})

# The rate limits refuse a request in middleware or in SQL (before the request counter,
# licentric_requests_total, sees a response in the first case), so the refusals are counted here, where
# they become 429s. Process-wide, as every Prometheus metric is.
RATE_LIMITED = Counter("licentric_rate_limited", "Requests refused by the rate limit (429)")

INTERNAL = ErrorKind(500, "api_error", "internal_error")
UNAVAILABLE = ErrorKind(503, "api_error", "try_again")

# HTTP errors Litestar raises before a handler runs.
HTTP_CODES: dict[int, ErrorKind] = {
    400: ErrorKind(400, "invalid_request_error", "invalid_request"),
    401: REGISTRY["LAUTH"],
    403: REGISTRY["LDNID"],
    404: ErrorKind(404, "invalid_request_error", "route_not_found"),
    405: ErrorKind(405, "invalid_request_error", "method_not_allowed"),
    413: ErrorKind(413, "invalid_request_error", "request_too_large"),
    415: ErrorKind(415, "invalid_request_error", "unsupported_media_type"),
    429: REGISTRY["LRATE"],
}


# msgspec names the field in the message when the body as a whole is at fault
# ("Object missing required field `kind`"); Litestar then reports the key "data".
_FIELD_IN_MESSAGE = re.compile(r"field `([^`]+)`")


class ApiError(Exception):
    """An error raised by the Python layer itself, with a registry code."""

    def __init__(self, sqlstate: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.kind = REGISTRY[sqlstate]
        self.message = message
        self.param = param


def error_response(
    kind: ErrorKind, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    body = {"error": {"type": kind.type, "code": kind.code, "message": message, "param": param}}
    return Response(body, status_code=kind.status, headers=headers)


def _from_database(exc: psycopg.Error) -> Response[dict[str, Any]]:
    sqlstate = exc.sqlstate or ""
    if not sqlstate and isinstance(exc, psycopg.DataError):
        # Refused by psycopg before it reached the server, e.g. a NUL in a string.
        return error_response(REGISTRY["LINVL"], f"invalid input: {exc}")
    if not sqlstate and isinstance(exc, psycopg.OperationalError):
        log.error("database unavailable: %s", exc)
        return error_response(
            UNAVAILABLE, "the database is unavailable; retry later", headers={"Retry-After": "5"}
        )
    if _bad_request_value(exc):
        return error_response(BAD_VALUE, f"invalid input: {exc.diag.message_primary}")
    kind = REGISTRY.get(sqlstate) or STANDARD.get(sqlstate)
    if kind is None:
        log.exception("unmapped database error %s", sqlstate, exc_info=exc)
        return error_response(INTERNAL, "an internal error occurred; it has been logged")
    if kind.status >= 500:
        return error_response(kind, "the database is busy; retry the request", headers={"Retry-After": "1"})
    diag = exc.diag
    param = diag.column_name or None
    if sqlstate in REGISTRY:
        message = diag.message_primary or kind.code
    elif sqlstate == "23505":
        # RLS hides the duplicate key's detail; the constraint's default name
        # (<table>_account_id_<columns>_key) names the field.
        constraint = diag.constraint_name or ""
        prefix = f"{diag.table_name}_account_id_"
        fields = constraint[len(prefix) : -len("_key")] if constraint.startswith(prefix) else ""
        param = fields if fields and constraint.endswith("_key") else None
        message = f"another object already has this {param}" if param else "this object already exists"
    else:
        # Standard errors carry internal names; say what kind of input failed.
        message = f"invalid input: {diag.message_primary}"
    if sqlstate == "LRATE":  # a limit counted in SQL (licentric/rate_limit.py)
        RATE_LIMITED.inc()
        return error_response(kind, message, param, headers={"Retry-After": retry_after()})
    return error_response(kind, message, param)


def _from_http(exc: HTTPException) -> Response[dict[str, Any]]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        first = extra[0] if extra and isinstance(extra[0], dict) else {}
        kind = ErrorKind(
            422 if first else 400,
            "invalid_request_error",
            "invalid_parameter" if first else "invalid_request",
        )
        param = first.get("key") if first else None
        message = str(first.get("message", exc.detail) if first else exc.detail)
        if param == "data":  # "data" is Litestar's name for the body, not a parameter
            named = _FIELD_IN_MESSAGE.search(message)
            param = named.group(1) if named else None
            if message == repr("data"):  # Litestar's KeyError when there is no body at all
                message = "a JSON request body is required"
        return error_response(kind, message, param)
    kind = HTTP_CODES.get(status) or ErrorKind(
        status, "invalid_request_error" if status < 500 else "api_error", "http_error"
    )
    headers = dict(exc.headers or {})
    if status == 429:
        RATE_LIMITED.inc()
        if "RateLimit-Reset" in headers:
            headers["Retry-After"] = headers["RateLimit-Reset"]
    message = "no such route" if isinstance(exc, NotFoundException) else exc.detail
    return error_response(kind, message, headers=headers)


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """The app's only exception handler: every error leaves as the same JSON body."""
    if isinstance(exc, ApiError):
        return error_response(exc.kind, exc.message, exc.param)
    if isinstance(exc, psycopg.Error):
        return _from_database(exc)
    if isinstance(exc, PoolTimeout):
        return error_response(UNAVAILABLE, "the service is busy; retry later", headers={"Retry-After": "1"})
    if isinstance(exc, HTTPException):
        return _from_http(exc)
    log.exception("unhandled error", exc_info=exc)
    return error_response(INTERNAL, "an internal error occurred; it has been logged")
