"""HTTP for the clients: one request of an operation, with the key, retries, idempotency, errors and the
version check. The sync and async transports share everything but the sending and the sleeping."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from licentric_sdk import __version__
from licentric_sdk._generated import API_VERSION, OPERATIONS, Operation
from licentric_sdk.errors import APIConnectionError, LicentricError, error_from_response

log = logging.getLogger("licentric_sdk")

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
USER_AGENT = f"licentric-python/{__version__}"
# The header every answer of the API carries: the server's version, which is its API's version.
VERSION_HEADER = "licentric-version"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of one call: up to max_retries more attempts after 429, 409 idempotency_key_in_use, 5xx or no
    answer. The delay before attempt n is the answer's Retry-After when it gives one (at most
    max_retry_after, beyond which the call fails at once), else a random share of
    min(max_delay, initial_delay * 2**n) ("full jitter", so clients that failed together spread out)."""

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.initial_delay * 2**attempt))

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before retrying after this attempt (0-based), or None: do not retry."""
        if attempt >= self.max_retries:
            return None
        if response is None:
            return self.backoff(attempt)
        if not _retryable(response):
            return None
        after = _retry_after(response.headers.get("retry-after"))
        if after is None:
            return self.backoff(attempt)
        return after if after <= self.max_retry_after else None


def _retryable(response: httpx.Response) -> bool:
    if response.status_code in RETRY_STATUSES:
        return True
    # The same Idempotency-Key is still being answered by another request: its answer comes soon.
    return response.status_code == 409 and b"idempotency_key_in_use" in response.content


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from either form (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@dataclass(frozen=True)
class Prepared:
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    content: bytes | None


def compatible(sdk_api: str, server: str) -> bool:
    """Semantic versioning: the same major version (the same minor before 1.0) keeps the API's contract."""
    ours, theirs = sdk_api.split("."), server.split(".")
    width = 1 if ours[0] != "0" else 2
    return ours[:width] == theirs[:width]


class BaseTransport:
    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        retry: RetryPolicy,
        headers: Mapping[str, str] | None,
    ) -> None:
        api_key = api_key or os.environ.get("LICENTRIC_API_KEY")
        if not api_key:
            raise LicentricError("no API key: pass api_key= or set LICENTRIC_API_KEY")
        self.base_url = (base_url or os.environ.get("LICENTRIC_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self.headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, **(headers or {})}
        self.server_version: str | None = None
        self._pid = os.getpid()

    def prepare(
        self,
        operation: Operation,
        path: Mapping[str, Any] | None,
        query: Mapping[str, Any] | None,
        body: Any,
        headers: Mapping[str, Any] | None,
        idempotency_key: str | None,
    ) -> Prepared:
        url = self.base_url + operation.path.format_map(
            {name: quote(str(value), safe="") for name, value in (path or {}).items()}
        )
        params = {
            name: _query_value(value)
            for name, value in (query or {}).items()
            if value is not None and value is not msgspec.UNSET
        }
        sent = dict(self.headers)
        sent.update(
            {
                name: str(value)
                for name, value in (headers or {}).items()
                if value not in (None, msgspec.UNSET)
            }
        )
        content = None
        if body is not msgspec.UNSET:
            content = _encoder.encode(body)
            sent["Content-Type"] = "application/json"
        if operation.method == "POST":
            # Made once per call, so every retry of this POST carries the same key.
            sent["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        return Prepared(operation.method, url, params, sent, content)

    def answer(self, operation: Operation, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise error_from_response(
                response.status_code, response.content, response.headers.get("x-request-id")
            )
        return msgspec.json.decode(response.content, type=operation.response)

    def note_version(self, response: httpx.Response) -> None:
        version = response.headers.get(VERSION_HEADER)
        if version and version != self.server_version:
            self.server_version = version
            if not compatible(API_VERSION, version):
                log.warning(
                    "licentric-sdk %s was made for API %s; the server at %s runs %s",
                    __version__,
                    API_VERSION,
                    self.base_url,
                    version,
                )

    def forked(self) -> bool:
        """True once in a process forked from the one that made the connections (gunicorn's workers):
        a child must not share its parent's sockets, so it opens its own."""
        if os.getpid() == self._pid:
            return False
        self._pid = os.getpid()
        return True


class SyncTransport(BaseTransport):
    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, base_url, timeout, retry or RetryPolicy(), headers)
        self._http_transport = http_transport
        self._client = self._new_client()

    def _new_client(self) -> httpx.Client:
        return httpx.Client(timeout=self.timeout, transport=self._http_transport)

    def request(
        self,
        operation_id: str,
        *,
        path: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        body: Any = msgspec.UNSET,
        headers: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        operation = OPERATIONS[operation_id]
        prepared = self.prepare(operation, path, query, body, headers, idempotency_key)
        if self.forked():
            self._client = self._new_client()  # the parent's stays open for the parent
        attempt = 0
        while True:
            response = None
            try:
                response = self._client.request(
                    prepared.method,
                    prepared.url,
                    params=prepared.params,
                    headers=prepared.headers,
                    content=prepared.content,
                )
            except httpx.TransportError as exc:
                failure: Exception = exc
            else:
                self.note_version(response)
            delay = self.retry.delay(attempt, response)
            if delay is None:
                if response is None:
                    raise APIConnectionError(f"{prepared.method} {prepared.url}: {failure!r}") from failure
                return self.answer(operation, response)
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._client.close()


class AsyncTransport(BaseTransport):
    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, base_url, timeout, retry or RetryPolicy(), headers)
        self._http_transport = http_transport
        self._client = self._new_client()

    def _new_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, transport=self._http_transport)

    async def request(
        self,
        operation_id: str,
        *,
        path: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        body: Any = msgspec.UNSET,
        headers: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        operation = OPERATIONS[operation_id]
        prepared = self.prepare(operation, path, query, body, headers, idempotency_key)
        if self.forked():
            self._client = self._new_client()
        attempt = 0
        while True:
            response = None
            try:
                response = await self._client.request(
                    prepared.method,
                    prepared.url,
                    params=prepared.params,
                    headers=prepared.headers,
                    content=prepared.content,
                )
            except httpx.TransportError as exc:
                failure: Exception = exc
            else:
                self.note_version(response)
            delay = self.retry.delay(attempt, response)
            if delay is None:
                if response is None:
                    raise APIConnectionError(f"{prepared.method} {prepared.url}: {failure!r}") from failure
                return self.answer(operation, response)
            await asyncio.sleep(delay)
            attempt += 1

    async def close(self) -> None:
        await self._client.aclose()
