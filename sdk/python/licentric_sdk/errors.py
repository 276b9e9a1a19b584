"""Typed exceptions: one class per kind of failure, each carrying the API's error body
(`{"error": {"type", "code", "message", "param"}}`), the HTTP status and the request id."""

from __future__ import annotations

from typing import Any

import msgspec


class LicentricError(Exception):
    """Any failure of a call. `code` is the stable machine-readable code (e.g. `resource_missing`)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.status or '-'} {self.code or self.type or 'error'}: {self.message}{where}"


class APIConnectionError(LicentricError):
    """No answer: the connection failed, was reset, or timed out (after the retries)."""


class APIError(LicentricError):
    """An HTTP error answer; the subclasses name the common statuses."""


class InvalidRequestError(APIError):
    """400 or 422: the request is malformed or a parameter is invalid (`param` names it when known)."""


class AuthenticationError(APIError):
    """401: the API key is missing, malformed, unknown, revoked or expired."""


class PaymentRequiredError(APIError):
    """402: a plan limit (`plan_limit_reached`) or a hard budget (`budget_exhausted`) is reached."""


class PermissionDeniedError(APIError):
    """403: the key may not do this (a publishable key, an inactive account)."""


class NotFoundError(APIError):
    """404: no such object in this account."""


class ConflictError(APIError):
    """409: an illegal state change, a duplicate, or an Idempotency-Key in use."""


class RateLimitError(APIError):
    """429, after the retries."""


class ServerError(APIError):
    """5xx, after the retries."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
    429: RateLimitError,
}


class _ErrorDetail(msgspec.Struct):
    message: str = ""
    type: str | None = None
    code: str | None = None
    param: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


def error_from_response(status: int, content: bytes, request_id: str | None) -> APIError:
    """The exception for an error answer; a body not in the API's shape (a proxy's page) keeps its text."""
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    try:
        detail = msgspec.json.decode(content, type=_ErrorBody).error
    except msgspec.DecodeError:
        return cls(
            content[:200].decode("utf-8", "replace") or f"HTTP {status}",
            status=status,
            request_id=request_id,
            body=content,
        )
    return cls(
        detail.message,
        status=status,
        type=detail.type,
        code=detail.code,
        param=detail.param,
        request_id=request_id,
        body=msgspec.json.decode(content),
    )
