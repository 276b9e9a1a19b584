"""Outbound webhook delivery: the dispatcher `licentric worker` (and so `licentric up`) runs beside its
jobs (DESIGN §6, docs/webhooks.md).

Every rule is in SQL (functions/80_webhooks.sql): the fan-out of events into deliveries, the lease, the
retry schedule, 410 and five days of failure disabling an endpoint. This module does what SQL cannot:

- wake: a connection of its own LISTENs on 'licentric_webhooks' (the fan-out notifies it when a
  delivery is made, retried or replayed); with no notification it still polls every
  LICENTRIC_WEBHOOK_POLL_INTERVAL seconds (retries come due without one). When Postgres goes away it
  reconnects by itself, and polls at once when it is back.
- claim: worker.claim_webhook_deliveries in a short transaction of its own, as many as this worker can
  hold (LICENTRIC_WEBHOOK_CONCURRENCY, less what it holds), shared fairly between the accounts with
  due deliveries (decision 62); again at once while a claim returns any. The claim leases each
  delivery to this worker until the lease (LICENTRIC_WEBHOOK_LEASE) ends, so several workers never
  send one delivery at once, and a worker that dies mid-send loses nothing: the lease runs out and
  another worker claims it.
- send, outside any transaction: decrypt the endpoint's secrets (SecretBox), sign (webhook_signing),
  POST with aiohttp, no redirect followed, LICENTRIC_WEBHOOK_TIMEOUT for the whole exchange, the
  response read up to 1 KB. The connector's resolver is the SSRF guard (licentric.ssrf), so the
  address connected to is the address checked, unless LICENTRIC_WEBHOOK_ALLOW_PRIVATE_TARGETS.
- record: worker.record_webhook_attempt in a short transaction (status, latency, the first 1 KB of the
  body, an error class, Retry-After in seconds). Postgres being away at that moment is retried until
  the lease would end; after that the delivery goes out again (at least once).
- stop (SIGTERM): no more claims; sends in flight get up to the timeout to finish and be recorded; the
  leases of those still running then, and of claimed deliveries not started, are given back with
  worker.release_webhook_deliveries (due now).

Each send is a task of its own, so a receiver that hangs holds one slot until the timeout, never the
others; and an endpoint gets a quarter of the slots in flight and a quarter waiting (`endpoint_slots`):
what the claim gives beyond that is given back at once (Dispatcher's docstring, decision 38).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import aiohttp
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from licentric import ssrf
from licentric.crypto import DecryptionError, SecretBox
from licentric.db import check_login, open_pool
from licentric.settings import Settings
from licentric.webhook_signing import signature_headers

log = logging.getLogger("licentric.webhooks")

CHANNEL = "licentric_webhooks"
# Bytes of a response read (and characters kept); the rest is never read.
RESPONSE_LIMIT = 1024
# Seconds between two reconnection attempts when Postgres is away, at most.
MAX_BACKOFF = 5.0
PURPOSE = "webhook_endpoint_secret"

CLAIM = "select * from worker.claim_webhook_deliveries(batch_size => %(batch_size)s, lease => %(lease)s)"
RECORD = (
    "select worker.record_webhook_attempt(delivery_id => %(delivery_id)s, account_id => %(account_id)s,"
    " lease_id => %(lease_id)s, started_at => %(started_at)s, latency_ms => %(latency_ms)s,"
    " status_code => %(status_code)s, error_class => %(error_class)s, response_body => %(response_body)s,"
    " retry_after_seconds => %(retry_after_seconds)s) as outcome"
)
RELEASE = "select worker.release_webhook_deliveries(lease_ids => %(lease_ids)s) as released"

T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    """One claimed delivery, as worker.claim_webhook_deliveries returns it."""

    delivery_id: UUID
    account_id: UUID
    endpoint_id: UUID
    lease_id: UUID
    url: str
    secrets: list[bytes]
    event_id: UUID
    event_type: str
    payload: str
    attempt: int

    @classmethod
    def of(cls, row: dict[str, Any]) -> Delivery:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to, as worker.record_webhook_attempt takes it."""

    started_at: datetime
    latency_ms: int
    status_code: int | None = None
    error_class: str | None = None
    response_body: str | None = None
    retry_after_seconds: int | None = None


def parse_retry_after(value: str | None, now: datetime) -> int | None:
    """Retry-After as whole seconds from now: a number of seconds or an HTTP date; None if absent or
    unreadable. The SQL caps what it honours (24 h)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(int(value), 2**31 - 1)
    try:
        at = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return max(0, min(math.ceil((at - now).total_seconds()), 2**31 - 1))


def error_class(exc: BaseException) -> str:
    """The error class of an attempt that got no usable response."""
    if isinstance(exc, ssrf.UnsafeTarget):
        return exc.code
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts (ServerTimeoutError, ConnectionTimeoutError) too
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return "tls"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.InvalidURL):
        return "unsafe_url"
    return "protocol"


def response_text(data: bytes) -> str:
    """A response body as text the database takes: UTF-8 (bad bytes replaced), no NUL, 1,024
    characters at most."""
    return data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")[:RESPONSE_LIMIT]


async def read_capped(response: aiohttp.ClientResponse, limit: int = RESPONSE_LIMIT) -> bytes:
    """At most limit bytes of the body; the rest is never read (the connection is closed, not reused)."""
    data = b""
    while len(data) < limit:
        chunk = await response.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


class Sender:
    """The HTTP side of deliveries: one aiohttp session whose connector resolves through the SSRF guard."""

    def __init__(self, settings: Settings) -> None:
        if settings.secret_key is None:
            raise ValueError("delivering webhooks needs LICENTRIC_SECRET_KEY")
        self._box = SecretBox(settings.secret_key)
        self._allow_private = settings.webhook_allow_private_targets
        self._timeout = aiohttp.ClientTimeout(total=settings.webhook_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._connections = settings.webhook_concurrency

    async def __aenter__(self) -> Sender:
        connector = aiohttp.TCPConnector(
            limit=self._connections,
            resolver=ssrf.GuardedResolver(allow_private=self._allow_private),
        )
        # trust_env stays off: a proxy from the environment would connect where the guard never looked.
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, auto_decompress=False, trust_env=False
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def secrets(self, delivery: Delivery) -> list[str]:
        return [self._box.decrypt(c, delivery.account_id, PURPOSE) for c in delivery.secrets]

    async def send(self, delivery: Delivery) -> Attempt:
        """One attempt; never raises for what the receiver or the network does."""
        assert self._session is not None, "use `async with Sender(...)`"
        started_at = datetime.now(UTC)
        started = time.perf_counter()

        def elapsed() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            secrets = self.secrets(delivery)
            headers = signature_headers(delivery.payload, str(delivery.event_id), int(time.time()), secrets)
        except (DecryptionError, ValueError) as exc:
            log.error(
                "webhook secret unusable",
                extra={"fields": {"delivery_id": str(delivery.delivery_id), "error": str(exc)}},
            )
            return Attempt(started_at, elapsed(), error_class="secret_unusable")
        try:
            ssrf.check_literal(delivery.url, allow_private=self._allow_private)
            async with self._session.post(
                delivery.url, data=delivery.payload.encode(), headers=headers, allow_redirects=False
            ) as response:
                body = await read_capped(response)
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
        except (aiohttp.ClientError, TimeoutError, ssrf.UnsafeTarget, OSError) as exc:
            return Attempt(started_at, elapsed(), error_class=error_class(exc))
        except Exception:
            # A bug here must not leave the delivery leased and unrecorded on every retry.
            fields = {"delivery_id": str(delivery.delivery_id)}
            log.exception("webhook send failed unexpectedly", extra={"fields": fields})
            return Attempt(started_at, elapsed(), error_class="internal")
        if 200 <= status < 300:
            failure = None
        elif 300 <= status < 400:
            failure = "redirect"
        else:
            failure = "http_status"
        return Attempt(started_at, elapsed(), status, failure, response_text(body), retry_after)


def endpoint_slots(concurrency: int) -> int:
    """Sends one endpoint may have in flight in one worker, and deliveries it may have waiting for them:
    a quarter of the slots each (at least one), so an endpoint that hangs holds half of them at most."""
    return max(1, concurrency // 4)


@dataclass
class Claimed:
    delivery: Delivery
    # time.monotonic() of the claim: the lease ends lease seconds later.
    at: float


class Dispatcher:
    """Claims due deliveries, sends each in a task of its own and records the attempts.

    Fairness between endpoints: the claim shares itself between accounts (decision 62), not between
    one account's endpoints. An endpoint has at most `endpoint_slots` sends in flight here and as many
    claimed deliveries waiting for them; what the claim gives beyond that is released at once (due now,
    so behind what was due before: the next claims reach the other endpoints' deliveries). After such a
    round the dispatcher claims again only when a send ends with nothing waiting behind it, or at the
    poll interval, not on every notification (the release notifies too: two workers would otherwise
    claim and release the same backlog back and forth).
    """

    def __init__(self, settings: Settings, role: str, pool: AsyncConnectionPool, sender: Sender) -> None:
        self._settings = settings
        self._role = role
        self._pool = pool
        self._sender = sender
        self._lease = timedelta(seconds=settings.webhook_lease)
        self._concurrency = settings.webhook_concurrency
        self._endpoint_slots = endpoint_slots(settings.webhook_concurrency)
        # Set by a notification (work may be due), and when a send ends (room to claim into).
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room_unqueued = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], Claimed] = {}
        self._sending: Counter[UUID] = Counter()
        self._waiting: dict[UUID, deque[Claimed]] = {}
        self._waiting_count = 0
        # Leases to give back: waiting deliveries whose lease no longer covers a send.
        self._expired: list[UUID] = []

    @property
    def held(self) -> int:
        """Claimed deliveries this worker holds: in flight or waiting for their endpoint."""
        return len(self._in_flight) + self._waiting_count

    # The database

    async def _transaction(self, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn, conn.transaction():
            return await (await conn.execute(statement, params)).fetchall()

    async def _until(
        self, work: Callable[[], Awaitable[T]], deadline: float, what: str, fields: dict[str, Any]
    ) -> T | None:
        """work(), tried again while Postgres is unreachable, until the monotonic deadline; None then."""
        delay = 0.1
        while True:
            try:
                return await work()
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if time.monotonic() + delay >= deadline:
                    log.error(
                        "%s failed: Postgres unreachable",
                        what,
                        extra={"fields": {**fields, "error": str(exc)}},
                    )
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def claim(self, batch_size: int) -> list[Delivery]:
        rows = await self._transaction(CLAIM, {"batch_size": batch_size, "lease": self._lease})
        return [Delivery.of(row) for row in rows]

    async def release(self, lease_ids: list[UUID], deadline: float) -> None:
        if not lease_ids:
            return

        async def work() -> list[dict[str, Any]]:
            return await self._transaction(RELEASE, {"lease_ids": lease_ids})

        rows = await self._until(work, deadline, "releasing webhook deliveries", {"count": len(lease_ids)})
        if rows is not None:
            log.debug("webhook deliveries released", extra={"fields": {"released": rows[0]["released"]}})

    async def record(self, delivery: Delivery, attempt: Attempt, deadline: float) -> str | None:
        params = {
            "delivery_id": delivery.delivery_id,
            "account_id": delivery.account_id,
            "lease_id": delivery.lease_id,
            "started_at": attempt.started_at,
            "latency_ms": attempt.latency_ms,
            "status_code": attempt.status_code,
            "error_class": attempt.error_class,
            "response_body": attempt.response_body,
            "retry_after_seconds": attempt.retry_after_seconds,
        }

        async def work() -> str:
            return (await self._transaction(RECORD, params))[0]["outcome"]

        return await self._until(
            work, deadline, "recording a webhook attempt", {"delivery_id": str(delivery.delivery_id)}
        )

    # Sending

    async def _deliver(self, claimed: Claimed) -> None:
        delivery = claimed.delivery
        attempt = await self._sender.send(delivery)
        # Past the lease another worker may hold it: the record would be 'stale' anyway.
        outcome = await self.record(delivery, attempt, claimed.at + self._lease.total_seconds())
        fields = {
            "delivery_id": str(delivery.delivery_id),
            "endpoint_id": str(delivery.endpoint_id),
            "event_id": str(delivery.event_id),
            "attempt": delivery.attempt,
            "status_code": attempt.status_code,
            "error_class": attempt.error_class,
            "latency_ms": attempt.latency_ms,
            "outcome": outcome,
        }
        level = logging.DEBUG if outcome == "succeeded" else logging.INFO
        log.log(level, "webhook attempt %s", outcome, extra={"fields": fields})

    def _start(self, claimed: Claimed) -> None:
        task = asyncio.create_task(self._deliver(claimed))
        self._in_flight[task] = claimed
        self._sending[claimed.delivery.endpoint_id] += 1
        task.add_done_callback(self._finished)

    def _sendable(self, claimed: Claimed) -> bool:
        """Whether the lease still covers a whole send started now, with a margin for its record: a send
        outliving its lease could be claimed and sent by another worker at the same time."""
        lease, timeout = self._lease.total_seconds(), self._settings.webhook_timeout
        left = claimed.at + lease - time.monotonic()
        return left > timeout + min(2.0, (lease - timeout) / 2)

    def _finished(self, task: asyncio.Task[None]) -> None:
        claimed = self._in_flight.pop(task)
        endpoint = claimed.delivery.endpoint_id
        self._sending[endpoint] -= 1
        if self._sending[endpoint] <= 0:
            del self._sending[endpoint]
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "webhook delivery task failed",
                exc_info=task.exception(),
                extra={"fields": {"delivery_id": str(claimed.delivery.delivery_id)}},
            )
        self._room.set()
        waiting = self._waiting.get(endpoint)
        while waiting:
            following = waiting.popleft()
            self._waiting_count -= 1
            if self._sendable(following):
                self._start(following)
                break
            self._expired.append(following.delivery.lease_id)
        if not waiting:
            self._waiting.pop(endpoint, None)
            self._room_unqueued.set()

    def _take(self, deliveries: list[Delivery]) -> list[UUID]:
        """Start what the endpoint limit allows, keep what may wait; the leases of the rest."""
        now = time.monotonic()
        over: list[UUID] = []
        # Oldest first (ids are UUIDv7, in creation order): the claim returns its rows in no set order, and
        # an endpoint's first sends must not be its newest while its oldest wait or go back.
        for delivery in sorted(deliveries, key=lambda claimed: claimed.delivery_id):
            claimed = Claimed(delivery, now)
            endpoint = delivery.endpoint_id
            if self._sending[endpoint] < self._endpoint_slots:
                self._start(claimed)
            elif len(self._waiting.get(endpoint, ())) < self._endpoint_slots:
                self._waiting.setdefault(endpoint, deque()).append(claimed)
                self._waiting_count += 1
            else:
                over.append(delivery.lease_id)
        return over

    # Waking

    async def listen(self, stop: asyncio.Event) -> None:
        """LISTEN on its own connection, waking the claim loop on each notification; reconnects by itself."""
        delay = 0.1
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._settings.database_url or "", autocommit=True
                ) as conn:
                    await check_login(conn, self._role)
                    await conn.execute(sql.SQL("listen {}").format(sql.Identifier(CHANNEL)))
                    if delay > 0.1:
                        log.info("webhook listener reconnected")
                    delay = 0.1
                    # Anything notified while it was away is due now.
                    self._wake.set()
                    while not stop.is_set():
                        async for _ in conn.notifies(timeout=self._settings.webhook_poll_interval):
                            self._wake.set()
                        # A quiet spell: make sure the connection still lives.
                        await conn.execute("select")
            except psycopg.OperationalError as exc:
                if stop.is_set():
                    return
                log.warning(
                    "webhook listener lost its connection; reconnecting",
                    extra={"fields": {"error": str(exc), "retry_in_s": delay}},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, MAX_BACKOFF)

    async def _wait(self, stop: asyncio.Event, *events: asyncio.Event) -> None:
        """Until one of the events, stop, or the poll interval."""
        waiters = [asyncio.ensure_future(event.wait()) for event in (stop, *events)]
        try:
            await asyncio.wait(
                waiters, timeout=self._settings.webhook_poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    # The loop

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and send until stop is set, then drain: in-flight sends get the timeout to finish; the
        leases of the rest are given back."""
        listener = asyncio.create_task(self.listen(stop))
        delay = 0.1
        backlogged = False
        try:
            while not stop.is_set():
                if self._expired:
                    expired, self._expired = self._expired, []
                    await self.release(expired, time.monotonic() + self._settings.webhook_timeout)
                free = self._concurrency - self.held
                if free <= 0:
                    self._room.clear()
                    await self._wait(stop, self._room)
                    continue
                self._wake.clear()
                self._room.clear()
                self._room_unqueued.clear()
                try:
                    deliveries = await self.claim(free)
                except (psycopg.OperationalError, PoolTimeout) as exc:
                    log.warning(
                        "claiming webhook deliveries failed; trying again",
                        extra={"fields": {"error": str(exc), "retry_in_s": delay}},
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                except psycopg.Error as exc:
                    log.error(
                        "claiming webhook deliveries failed",
                        extra={"fields": {"sqlstate": exc.sqlstate, "error": str(exc)}},
                    )
                    await self._wait(stop, self._wake)
                    continue
                delay = 0.1
                over = self._take(deliveries)
                await self.release(over, time.monotonic() + self._settings.webhook_timeout)
                backlogged = bool(over)
                if backlogged:
                    # Only what saturated endpoints can wait for is due: claim again when a send ends
                    # with nothing waiting behind it, or at the poll interval.
                    await self._wait(stop, self._room_unqueued)
                elif deliveries:
                    # More may be due: a claim gives each account only its share (decision 62), so a short
                    # one does not mean the queue is empty. Claim again as soon as there is room.
                    continue
                else:
                    # Nothing is due: until a notification or the poll interval.
                    await self._wait(stop, self._wake)
        finally:
            await self._drain()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _drain(self) -> None:
        """Sends in flight get the timeout (and a little more to be recorded); the rest are released."""
        unsent = [claimed.delivery.lease_id for queue in self._waiting.values() for claimed in queue]
        unsent += self._expired
        self._expired = []
        self._waiting.clear()
        self._waiting_count = 0
        if self._in_flight:
            log.info("webhook dispatcher stopping", extra={"fields": {"in_flight": len(self._in_flight)}})
            _, pending = await asyncio.wait(list(self._in_flight), timeout=self._settings.webhook_timeout + 2)
            unsent += [self._in_flight[task].delivery.lease_id for task in pending]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.release(unsent, time.monotonic() + 5)


async def run(settings: Settings, role: str, stop: asyncio.Event) -> None:
    """The dispatcher until stop is set, with a pool of its own (so the jobs never wait for it, nor it
    for them). Restarted after an unexpected error; never stops the worker."""
    delay = 0.5
    while not stop.is_set():
        try:
            pool = await open_pool(
                settings.database_url or "", role, min_size=1, max_size=min(settings.webhook_concurrency, 8)
            )
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("webhook dispatcher cannot connect; retrying", extra={"fields": {"error": str(exc)}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, MAX_BACKOFF)
            continue
        try:
            async with Sender(settings) as sender:
                await Dispatcher(settings, role, pool, sender).run(stop)
        except Exception:
            log.exception("webhook dispatcher failed; restarting")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        finally:
            await pool.close()
