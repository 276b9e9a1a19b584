"""The clients: `Licentric` (sync) and `AsyncLicentric`, every operation of the API as
`client.<resource>.<method>(…)` (generated), plus the parts written by hand: the entitlement check,
the usage recorder and `usage.consume`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from msgspec import UNSET, UnsetType

from licentric_sdk import __version__
from licentric_sdk._generated import (
    API_VERSION,
    AsyncEntitlementsResource,
    AsyncResources,
    AsyncUsageResource,
    EntitlementCheck,
    EntitlementsResource,
    SyncResources,
    UsageResource,
)
from licentric_sdk._transport import AsyncTransport, RetryPolicy, SyncTransport, compatible
from licentric_sdk.errors import PaymentRequiredError
from licentric_sdk.local import AsyncLocalEntitlements, LocalEntitlements, LocalOptions
from licentric_sdk.usage import (
    AsyncUsageRecorder,
    Consumption,
    RecorderOptions,
    UsageRecorder,
    consumption_of,
    make_event,
)


@dataclass(frozen=True)
class Versions:
    """This SDK's version, the API version it was generated from, and the server's."""

    sdk: str
    api: str
    server: str | None

    @property
    def compatible(self) -> bool:
        return self.server is not None and compatible(self.api, self.server)


class Entitlements(EntitlementsResource):
    local: LocalEntitlements | None = None  # set by Licentric(local=LocalOptions(...))

    def check(
        self,
        entitlement: str,
        *,
        customer: str | None = None,
        license_id: str | UnsetType | None = UNSET,
        license_key: str | UnsetType | None = UNSET,
        customer_external_id: str | UnsetType | None = UNSET,
    ) -> EntitlementCheck:
        """May this customer (its external id, your own user id), license or license key use the entitlement?
        By customer with local evaluation on, answered from the local snapshot; else the server answers."""
        who = customer if customer is not None else customer_external_id
        if self.local is not None and isinstance(who, str) and license_id is UNSET and license_key is UNSET:
            return self.local.check(entitlement, who)
        return super().check(
            entitlement=entitlement,
            license_id=license_id,
            license_key=license_key,
            customer_external_id=customer if customer is not None else customer_external_id,
        )


class AsyncEntitlements(AsyncEntitlementsResource):
    local: AsyncLocalEntitlements | None = None  # set by AsyncLicentric(local=LocalOptions(...))

    async def check(
        self,
        entitlement: str,
        *,
        customer: str | None = None,
        license_id: str | UnsetType | None = UNSET,
        license_key: str | UnsetType | None = UNSET,
        customer_external_id: str | UnsetType | None = UNSET,
    ) -> EntitlementCheck:
        """The async `Entitlements.check`."""
        who = customer if customer is not None else customer_external_id
        if self.local is not None and isinstance(who, str) and license_id is UNSET and license_key is UNSET:
            return await self.local.check(entitlement, who)
        return await super().check(
            entitlement=entitlement,
            license_id=license_id,
            license_key=license_key,
            customer_external_id=customer if customer is not None else customer_external_id,
        )


class Usage(UsageResource):
    """`client.usage`: the API's usage operations, `record` (queued, never blocks) and `consume` (spends
    against hard budgets now)."""

    def __init__(self, transport: SyncTransport, options: RecorderOptions) -> None:
        super().__init__(transport)
        self.recorder = UsageRecorder(transport, options)

    def record(
        self,
        meter: str,
        quantity: float = 1,
        *,
        agent_id: str | None = None,
        license_id: str | None = None,
        subject_key: str | None = None,
        properties: dict[str, Any] | None = None,
        id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> bool:
        """Queue one event and return at once (False: dropped, the queue full). Sent in the background."""
        return self.recorder.record(
            make_event(
                meter,
                quantity,
                agent_id=agent_id,
                license_id=license_id,
                subject_key=subject_key,
                properties=properties,
                id=id,
                occurred_at=occurred_at,
            )
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything recorded so far is sent; False if the timeout came first."""
        return self.recorder.flush(timeout)

    def consume(
        self,
        meter: str,
        quantity: float = 1,
        *,
        agent_id: str | None = None,
        license_id: str | None = None,
        subject_key: str | None = None,
        properties: dict[str, Any] | None = None,
        id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Consumption:
        """Spend now, if every hard budget it falls under has room, in one transaction on the server (exact
        across processes). `allowed` False with `code` "budget_exhausted" when a budget refused it. An event
        is its id and instant: to spend once however often you call, pass the answer's `id` and
        `occurred_at` again."""
        event = make_event(
            meter,
            quantity,
            agent_id=agent_id,
            license_id=license_id,
            subject_key=subject_key,
            properties=properties,
            id=id,
            occurred_at=occurred_at,
        )
        try:
            answer = self.ingest(events=[event])
        except PaymentRequiredError as refused:
            return consumption_of(refused, event)
        return consumption_of(answer, event)


class AsyncUsage(AsyncUsageResource):
    """The async `Usage`: `record` is a plain call (queues in the running loop), the rest are awaited."""

    def __init__(self, transport: AsyncTransport, options: RecorderOptions) -> None:
        super().__init__(transport)
        self.recorder = AsyncUsageRecorder(transport, options)

    def record(
        self,
        meter: str,
        quantity: float = 1,
        *,
        agent_id: str | None = None,
        license_id: str | None = None,
        subject_key: str | None = None,
        properties: dict[str, Any] | None = None,
        id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> bool:
        """Queue one event and return at once (False: dropped). Call it from inside the running loop."""
        return self.recorder.record(
            make_event(
                meter,
                quantity,
                agent_id=agent_id,
                license_id=license_id,
                subject_key=subject_key,
                properties=properties,
                id=id,
                occurred_at=occurred_at,
            )
        )

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (as the sync one)
        return await self.recorder.flush(timeout)

    async def consume(
        self,
        meter: str,
        quantity: float = 1,
        *,
        agent_id: str | None = None,
        license_id: str | None = None,
        subject_key: str | None = None,
        properties: dict[str, Any] | None = None,
        id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> Consumption:
        """The async `Usage.consume`."""
        event = make_event(
            meter,
            quantity,
            agent_id=agent_id,
            license_id=license_id,
            subject_key=subject_key,
            properties=properties,
            id=id,
            occurred_at=occurred_at,
        )
        try:
            answer = await self.ingest(events=[event])
        except PaymentRequiredError as refused:
            return consumption_of(refused, event)
        return consumption_of(answer, event)


class Licentric(SyncResources):
    """The sync client. The key comes from `api_key` or LICENTRIC_API_KEY, the server from `base_url` or
    LICENTRIC_BASE_URL (default http://127.0.0.1:8000). Safe to share between threads, and across fork."""

    entitlements: Entitlements
    usage: Usage

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        usage: RecorderOptions | None = None,
        headers: Mapping[str, str] | None = None,
        http_transport: httpx.BaseTransport | None = None,
        local: LocalOptions | None = None,
    ) -> None:
        self._transport = SyncTransport(api_key, base_url, timeout, retry, headers, http_transport)
        super().__init__(self._transport)
        self.entitlements = Entitlements(self._transport)
        if local is not None:
            self.entitlements.local = LocalEntitlements(self._transport, local)
        self.usage = Usage(self._transport, usage or RecorderOptions())

    @property
    def server_version(self) -> str | None:
        """The version the server announced in its last answer (None before the first)."""
        return self._transport.server_version

    def versions(self) -> Versions:
        """Ask the server (GET /healthz) and report both versions."""
        self.operations.health()
        return Versions(__version__, API_VERSION, self._transport.server_version)

    def close(self) -> None:
        """Flush the usage recorder (up to its flush_timeout), stop the entitlement feed, disconnect."""
        self.usage.recorder.close()
        if self.entitlements.local is not None:
            self.entitlements.local.close()
        self._transport.close()

    def __enter__(self) -> Licentric:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncLicentric(AsyncResources):
    """The async client: the same operations, awaited; list methods are `async for` iterators."""

    entitlements: AsyncEntitlements
    usage: AsyncUsage

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        usage: RecorderOptions | None = None,
        headers: Mapping[str, str] | None = None,
        http_transport: httpx.AsyncBaseTransport | None = None,
        local: LocalOptions | None = None,
    ) -> None:
        self._transport = AsyncTransport(api_key, base_url, timeout, retry, headers, http_transport)
        super().__init__(self._transport)
        self.entitlements = AsyncEntitlements(self._transport)
        if local is not None:
            self.entitlements.local = AsyncLocalEntitlements(self._transport, local)
        self.usage = AsyncUsage(self._transport, usage or RecorderOptions())

    @property
    def server_version(self) -> str | None:
        return self._transport.server_version

    async def versions(self) -> Versions:
        await self.operations.health()
        return Versions(__version__, API_VERSION, self._transport.server_version)

    async def aclose(self) -> None:
        """Flush the usage recorder (up to its flush_timeout), stop the entitlement feed, disconnect."""
        await self.usage.recorder.close()
        if self.entitlements.local is not None:
            await self.entitlements.local.close()
        await self._transport.close()

    async def __aenter__(self) -> AsyncLicentric:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
