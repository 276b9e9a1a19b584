"""Usage that never blocks a request: `record()` puts an event in a bounded in-memory queue and returns;
a background thread (or an asyncio task) sends the queue in batches. docs/sdk.md, "Recording usage".

Every event gets its `id` and `occurred_at` when it is recorded, so sending a batch again after a failure
counts nothing twice (the server answers those events `duplicate`). Policy:
- a batch that fails for want of an answer (no connection, 429, 5xx) is kept and sent again, with backoff,
  until it goes through or the recorder is closed past its flush timeout; nothing queued is lost to an outage;
- a batch the server refuses outright (401, 403, 422 …) is dropped and reported: sending it again cannot help;
- events the server answers `rejected` (unknown meter, budget exhausted …) are reported, not retried;
- when the queue is full (`max_queue` events waiting, e.g. during a long outage), `on_full="drop"` (the
  default) drops the new event and counts it; `on_full="block"` makes the sync `record()` wait up to
  `block_timeout` for room, then drop (the async `record()` cannot wait: it drops). Drops are counted in
  `stats` and reported.
Reports go to `on_error(error)` if given, else to the `licentric_sdk` logger; never raised into the caller.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from licentric_sdk._generated import UsageEvent, UsageIngest
from licentric_sdk.errors import APIConnectionError, LicentricError, PaymentRequiredError, ServerError

if TYPE_CHECKING:
    from licentric_sdk._transport import AsyncTransport, SyncTransport

log = logging.getLogger("licentric_sdk")

ErrorCallback = Callable[[LicentricError], None]


class UsageRejected(LicentricError):
    """Events of a sent batch the server answered `rejected`; `results` holds their answers."""

    def __init__(self, results: list[Any]) -> None:
        codes = sorted({r.code for r in results})
        super().__init__(f"{len(results)} usage events rejected: {', '.join(codes)}", code=codes[0])
        self.results = results


class UsageDropped(LicentricError):
    """Events dropped without being counted: the queue was full, or the server refused their batch."""

    def __init__(self, count: int, reason: str, cause: LicentricError | None = None) -> None:
        super().__init__(f"{count} usage events dropped: {reason}", code="usage_dropped")
        self.count = count
        self.cause = cause


@dataclass
class UsageStats:
    """Counts since the recorder started (events, not batches)."""

    recorded: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    dropped: int = 0
    batches: int = 0
    retries: int = 0


@dataclass
class RecorderOptions:
    """batch_size events a request at most (the API takes 10,000); a batch is sent when full or
    flush_interval seconds after its first event; max_queue events wait at most."""

    batch_size: int = 1000
    flush_interval: float = 1.0
    max_queue: int = 100_000
    on_full: Literal["drop", "block"] = "drop"
    block_timeout: float = 1.0
    on_error: ErrorCallback | None = None
    # Backoff between sends of a batch that got no answer: random up to min(max_backoff, 0.5 * 2**n).
    max_backoff: float = 30.0
    # How long close() and the exit handler wait for the queue to drain.
    flush_timeout: float = 10.0


@dataclass
class Consumption:
    """The answer of `usage.consume`: whether the spend went through (`duplicate`: it had already), and the
    event's identity (its id and instant)."""

    allowed: bool
    code: str | None
    duplicate: bool
    id: str
    occurred_at: datetime


def make_event(
    meter: str,
    quantity: float,
    *,
    agent_id: str | None,
    license_id: str | None,
    subject_key: str | None,
    properties: dict[str, Any] | None,
    id: str | None,
    occurred_at: datetime | None,
) -> UsageEvent:
    """An event with its identity fixed now: the same id and instant on every send."""
    unset = msgspec.UNSET
    return UsageEvent(
        id=id or uuid.uuid4().hex,
        meter=meter,
        quantity=quantity,
        occurred_at=occurred_at or datetime.now(UTC),
        agent_id=agent_id or unset,
        license_id=license_id or unset,
        subject_key=subject_key or unset,
        properties=properties if properties is not None else unset,
    )


def consumption_of(answer: UsageIngest | PaymentRequiredError, event: UsageEvent) -> Consumption:
    assert isinstance(event.occurred_at, datetime)  # make_event set it
    if isinstance(answer, PaymentRequiredError):
        return Consumption(False, answer.code, False, event.id, event.occurred_at)
    result = answer.data[0]
    if result.status == "rejected":
        return Consumption(False, result.code, False, event.id, event.occurred_at)
    return Consumption(True, None, result.status == "duplicate", event.id, event.occurred_at)


def _retryable(error: LicentricError) -> bool:
    return isinstance(error, APIConnectionError | ServerError) or error.status == 429


class _Queue:
    """The state shared by the sync and async recorders: the queue, its bounds, the counts, the reports."""

    def __init__(self, options: RecorderOptions) -> None:
        self.options = options
        self.events: deque[UsageEvent] = deque()
        self.unresolved = 0  # queued or being sent
        self.stats = UsageStats()
        self._unreported_drops = 0

    def report(self, error: LicentricError) -> None:
        if self.options.on_error is None:
            log.warning("licentric usage: %s", error)
            return
        try:
            self.options.on_error(error)
        except Exception:
            log.exception("licentric usage: the on_error callback failed")

    def drop(self, count: int) -> None:
        self.stats.dropped += count
        self._unreported_drops += count

    def report_drops(self) -> None:
        if self._unreported_drops:
            count, self._unreported_drops = self._unreported_drops, 0
            self.report(UsageDropped(count, f"the queue was full ({self.options.max_queue} events)"))

    def take(self) -> list[UsageEvent]:
        return [self.events.popleft() for _ in range(min(self.options.batch_size, len(self.events)))]

    def sent(self, batch: list[UsageEvent], answer: UsageIngest) -> None:
        self.stats.batches += 1
        self.stats.accepted += answer.accepted
        self.stats.duplicates += answer.duplicates
        self.stats.rejected += answer.rejected
        rejected = [result for result in answer.data if result.status == "rejected"]
        if rejected:
            self.report(UsageRejected(rejected))

    def refused(self, batch: list[UsageEvent], error: LicentricError) -> None:
        self.stats.dropped += len(batch)
        self.report(UsageDropped(len(batch), f"the server refused the batch ({error})", error))

    def backoff(self, failures: int) -> float:
        return random.uniform(0, min(self.options.max_backoff, 0.5 * 2**failures))


# Every live sync recorder: flushed at exit, reset in a forked child. Weak, so an unused client is collected.
_RECORDERS: weakref.WeakSet[UsageRecorder] = weakref.WeakSet()


def _close_all() -> None:
    for recorder in list(_RECORDERS):
        recorder.close()


def _after_fork_in_child() -> None:
    for recorder in list(_RECORDERS):
        recorder._after_fork()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork_in_child)


class UsageRecorder:
    """The background thread of a sync client (`client.usage.record`). Started on the first record, and again
    in a forked child, whose queue starts empty (the parent sends what it recorded)."""

    def __init__(self, transport: SyncTransport, options: RecorderOptions) -> None:
        self._transport = transport
        self._queue = _Queue(options)
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._flushing = 0  # flush() callers waiting: send what is queued without waiting for the interval
        self._closing = False
        self._deadline = float("inf")  # while closing: give up retrying after this instant
        _RECORDERS.add(self)

    def _after_fork(self) -> None:
        """In a forked child: the parent's thread is not here, and its lock may have been held at the fork;
        the child starts afresh with an empty queue (the parent sends what it recorded)."""
        self._lock = threading.Condition()
        self._thread = None
        self._queue = _Queue(self._queue.options)
        self._flushing = 0

    @property
    def stats(self) -> UsageStats:
        return self._queue.stats

    @property
    def options(self) -> RecorderOptions:
        return self._queue.options

    def record(self, event: UsageEvent) -> bool:
        """Queue the event; False if it was dropped (the queue full). Never raises for the server's sake."""
        with self._lock:
            self._ensure_thread()
            queue = self._queue
            if len(queue.events) >= queue.options.max_queue and queue.options.on_full == "block":
                self._lock.wait_for(
                    lambda: len(queue.events) < queue.options.max_queue, queue.options.block_timeout
                )
            if len(queue.events) >= queue.options.max_queue or self._closing:
                queue.drop(1)
                return False
            queue.events.append(event)
            queue.unresolved += 1
            queue.stats.recorded += 1
            if len(queue.events) >= queue.options.batch_size:
                self._lock.notify_all()
            return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event recorded so far is sent (or dropped); False if timeout came first."""
        with self._lock:
            if self._thread is None:
                return self._queue.unresolved == 0
            self._flushing += 1
            self._lock.notify_all()
            try:
                return self._lock.wait_for(lambda: self._queue.unresolved == 0, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to timeout, default options.flush_timeout), then stop the thread. Events still queued
        after the timeout are dropped and reported."""
        timeout = self.options.flush_timeout if timeout is None else timeout
        with self._lock:
            if self._closing:
                return self._queue.unresolved == 0
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout + 1)
        with self._lock:
            left = self._queue.unresolved
            if left:
                self._queue.drop(left)
                self._queue.events.clear()
                self._queue.unresolved = 0
            self._queue.report_drops()
            return left == 0

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._closing:
            self._thread = threading.Thread(target=self._run, name="licentric-usage", daemon=True)
            self._thread.start()

    def _next_batch(self) -> list[UsageEvent] | None:
        """Wait for a batch: full, its interval over, a flush asked for, or closing. None: stop."""
        queue = self._queue
        with self._lock:
            self._lock.wait_for(lambda: queue.events or self._closing)
            if not queue.events:
                return None
            deadline = time.monotonic() + queue.options.flush_interval
            self._lock.wait_for(
                lambda: len(queue.events) >= queue.options.batch_size or self._flushing or self._closing,
                max(0.0, deadline - time.monotonic()),
            )
            queue.report_drops()
            return queue.take()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._send(batch)
            with self._lock:
                self._queue.unresolved -= len(batch)
                self._lock.notify_all()

    def _send(self, batch: list[UsageEvent]) -> None:
        failures = 0
        while True:
            try:
                answer = self._transport.request("ingestUsageEvents", body=batch)
            except LicentricError as error:
                if not _retryable(error):
                    self._queue.refused(batch, error)
                    return
                failures += 1
                self._queue.stats.retries += 1
                delay = self._queue.backoff(failures)
                if time.monotonic() + delay > self._deadline:
                    self._queue.refused(batch, error)
                    return
                if failures == 1:
                    self._queue.report(error)
                with self._lock:
                    self._lock.wait_for(lambda: time.monotonic() > self._deadline, delay)
            else:
                self._queue.sent(batch, answer)
                return


class AsyncUsageRecorder:
    """The asyncio task of an async client: `record()` is a plain (non-async) call that queues, the task
    started on the first record in the running loop sends. `await client.aclose()` flushes."""

    def __init__(self, transport: AsyncTransport, options: RecorderOptions) -> None:
        self._transport = transport
        self._queue = _Queue(options)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing = 0
        self._closing = False

    @property
    def stats(self) -> UsageStats:
        return self._queue.stats

    def record(self, event: UsageEvent) -> bool:
        queue = self._queue
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="licentric-usage")
        if len(queue.events) >= queue.options.max_queue or self._closing:
            queue.drop(1)
            return False
        queue.events.append(event)
        queue.unresolved += 1
        queue.stats.recorded += 1
        self._drained.clear()
        if len(queue.events) >= queue.options.batch_size:
            self._wake.set()
        return True

    async def flush(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (as the sync one)
        if self._queue.unresolved == 0:
            return True
        self._flushing += 1
        self._wake.set()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._flushing -= 1

    async def close(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (as the sync one)
        timeout = self._queue.options.flush_timeout if timeout is None else timeout
        drained = await self.flush(timeout)
        self._closing = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        left = self._queue.unresolved
        if left:
            self._queue.drop(left)
            self._queue.events.clear()
            self._queue.unresolved = 0
        self._queue.report_drops()
        return drained

    async def _run(self) -> None:
        queue = self._queue
        while not self._closing:
            if not queue.events:
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(queue.events) < queue.options.batch_size and not self._flushing:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), queue.options.flush_interval)
            queue.report_drops()
            batch = queue.take()
            await self._send(batch)
            queue.unresolved -= len(batch)
            if queue.unresolved == 0:
                self._drained.set()

    async def _send(self, batch: list[UsageEvent]) -> None:
        failures = 0
        while True:
            try:
                answer = await self._transport.request("ingestUsageEvents", body=batch)
            except LicentricError as error:
                if not _retryable(error):
                    self._queue.refused(batch, error)
                    return
                failures += 1
                self._queue.stats.retries += 1
                if failures == 1:
                    self._queue.report(error)
                await asyncio.sleep(self._queue.backoff(failures))
            else:
                self._queue.sent(batch, answer)
                return
