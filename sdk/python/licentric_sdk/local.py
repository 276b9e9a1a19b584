"""Local evaluation of entitlement checks by customer (docs/sdk.md, "Checks in microseconds").

The server sends decisions it already made (GET /v1/entitlements/snapshot): per customer and code, a
timeline of answers, each holding until its `valid_until`. A check here picks the first answer whose
`valid_until` is ahead of the clock: it compares a clock and copies no rule (decision 80). A feed
(GET /v1/entitlements/changes, long-polled) keeps the answers fresh: from a background thread for
`Licentric`, a task for `AsyncLicentric`.

- mode "all": the whole account is held (one full snapshot, then changes); a customer not held does not exist.
  mode "lazy": a customer is fetched on its first check and kept in an LRU of `max_customers`.
- `max_staleness`: when the feed has not answered for that long, checks answer `allowed=fail_open` with
  reason STALE (default: closed).
- A 410 from the feed (cursor too old) or a failed snapshot: a new full snapshot ("all"), or an empty cache
  ("lazy").
- Forked children (gunicorn workers) restart their own feed.

Cursors are the server's; the SDK reads one thing from them: their leading number is the horizon below which
the page's data is complete, so a lazily fetched customer is not overwritten by an older page (decision 83).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from licentric_sdk._generated import (
    CustomerEntitlements,
    EntitlementAnswer,
    EntitlementCheck,
    EntitlementPage,
)
from licentric_sdk.errors import LicentricError

if TYPE_CHECKING:
    from licentric_sdk._transport import AsyncTransport, SyncTransport

log = logging.getLogger("licentric_sdk")

STALE = "STALE"
CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"

# (until as a Unix time, the answer); the last one's until is +inf.
Timeline = tuple[tuple[float, EntitlementCheck], ...]


@dataclass(frozen=True)
class LocalOptions:
    """How `client.entitlements.check(..., customer=...)` answers locally."""

    mode: Literal["all", "lazy"] = "all"
    max_customers: int = 100_000  # "lazy": the LRU's size
    max_staleness: float = 30.0  # seconds without an answer from the feed before checks fail
    fail_open: bool = False
    wait: float = 10.0  # the feed's long poll, seconds (the server caps it at 30)
    retry_delay: float = 1.0  # after a failed feed request
    page_size: int = 1000
    on_error: Callable[[Exception], None] | None = None


@dataclass(frozen=True)
class LocalStats:
    hits: int
    misses: int  # "lazy": fetched from the server
    stale: int  # answered STALE
    customers: int
    snapshots: int  # full snapshots taken ("all") or cache resets ("lazy")
    feed_pages: int
    feed_errors: int
    age: float  # seconds since the feed last answered


def _horizon(cursor: str) -> int:
    return int(cursor.split(".", 1)[0])


def _complete_below(cursor: str) -> int:
    """The horizon a page's data is complete below: a plain cursor, or a window's end (`<from>.<to>.<…>`)."""
    parts = cursor.split(".")
    return int(parts[1] if len(parts) > 1 else parts[0])


def _timeline(answers: Sequence[EntitlementAnswer]) -> Timeline:
    return tuple(
        (
            a.valid_until.timestamp() if a.valid_until is not None else math.inf,
            EntitlementCheck(allowed=a.allowed, reason=a.reason, license_id=a.license_id),
        )
        for a in answers
    )


class _Entry:
    __slots__ = ("codes", "default", "horizon")

    def __init__(self, entry: CustomerEntitlements, horizon: int) -> None:
        self.codes = {code: _timeline(answers) for code, answers in entry.entitlements.items()}
        self.default = _timeline(entry.default)
        self.horizon = horizon

    def at(self, entitlement: str, now: float) -> EntitlementCheck:
        for until, answer in self.codes.get(entitlement, self.default):
            if now < until:
                return answer
        raise AssertionError("a timeline ends with an answer valid for good")


_NOT_FOUND = EntitlementCheck(allowed=False, reason=CUSTOMER_NOT_FOUND, license_id=None)


class _Decisions:
    """The customers' decisions and the feed's position: what both drivers share. Entries are replaced whole
    (one dict assignment), so a check reads without a lock."""

    def __init__(self, options: LocalOptions) -> None:
        self.options = options
        self.entries: dict[str, _Entry] = {} if options.mode == "all" else OrderedDict()
        self.cursor: str | None = None
        self.fresh_at = -math.inf  # time.monotonic() of the feed's last answer
        self.lock = threading.Lock()  # writers only
        self.hits = self.misses = self.stale = self.snapshots = self.feed_pages = self.feed_errors = 0
        self._stale_answer = EntitlementCheck(allowed=options.fail_open, reason=STALE, license_id=None)

    # The hot path: a dict lookup and a clock comparison.
    def answer(self, entitlement: str, customer: str) -> EntitlementCheck | None:
        """The local answer, or None for a customer not held in "lazy" mode (a miss)."""
        if time.monotonic() - self.fresh_at > self.options.max_staleness:
            self.stale += 1
            return self._stale_answer
        entry = self.entries.get(customer)
        if entry is None:
            if self.options.mode == "lazy":
                return None
            self.hits += 1
            return _NOT_FOUND
        self.hits += 1
        return entry.at(entitlement, time.time())

    def load(self, pages: Sequence[EntitlementPage]) -> None:
        """A full snapshot ("all"): its first page's cursor is where the feed goes on."""
        horizon = _horizon(pages[0].cursor)
        entries = {e.customer: _Entry(e, horizon) for page in pages for e in page.data if e.found}
        with self.lock:
            self.entries = entries
            self.cursor = pages[0].cursor
            self.fresh_at = time.monotonic()
            self.snapshots += 1

    def reset(self, cursor: str) -> None:
        """Lazy mode: forget every customer and follow the feed from cursor."""
        with self.lock:
            self.entries = OrderedDict()
            self.cursor = cursor
            self.fresh_at = time.monotonic()
            self.snapshots += 1

    def apply(self, page: EntitlementPage) -> None:
        complete = _complete_below(page.cursor)
        with self.lock:
            for e in page.data:
                held = self.entries.get(e.customer)
                if held is not None and held.horizon > complete:
                    continue  # fetched after this page's snapshot: newer
                if self.options.mode == "all":
                    if e.found:
                        self.entries[e.customer] = _Entry(e, complete)
                    else:
                        self.entries.pop(e.customer, None)
                elif held is not None:
                    self.entries[e.customer] = _Entry(e, complete)
            self.cursor = page.cursor
            self.feed_pages += 1
            if not page.has_more:
                self.fresh_at = time.monotonic()

    def fetched(self, entitlement: str, customer: str, page: EntitlementPage) -> EntitlementCheck:
        """Lazy mode: a customer just fetched, kept unless the feed passed changes its data may lack."""
        self.misses += 1
        entry = _Entry(page.data[0], _horizon(page.cursor))
        with self.lock:
            if self.cursor is not None and entry.horizon >= _horizon(self.cursor):
                entries = self.entries
                assert isinstance(entries, OrderedDict)
                entries[customer] = entry
                entries.move_to_end(customer)
                while len(entries) > self.options.max_customers:
                    entries.popitem(last=False)
        return entry.at(entitlement, time.time())

    def unavailable(self, exc: Exception) -> EntitlementCheck:
        """A miss the server could not answer: as if stale."""
        self.failed(exc)
        self.stale += 1
        return self._stale_answer

    def stats(self) -> LocalStats:
        return LocalStats(
            self.hits,
            self.misses,
            self.stale,
            len(self.entries),
            self.snapshots,
            self.feed_pages,
            self.feed_errors,
            time.monotonic() - self.fresh_at,
        )

    def failed(self, exc: Exception) -> None:
        self.feed_errors += 1
        if self.options.on_error is not None:
            self.options.on_error(exc)
        else:
            log.warning("licentric: entitlement feed failed: %r", exc)


class LocalEntitlements:
    """Local checks for `Licentric` (sync), fed by a daemon thread. `client.entitlements.local`."""

    def __init__(self, transport: SyncTransport, options: LocalOptions) -> None:
        self._transport = transport
        self.decisions = _Decisions(options)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (me := ref()) is not None and me._restart_in_child())

    def start(self) -> None:
        """Take the first snapshot (best effort: a failure is retried by the feed) and start the feed."""
        try:
            self._resync()
        except LicentricError as exc:
            self.decisions.failed(exc)
        self._thread = threading.Thread(target=self._follow, name="licentric-entitlements", daemon=True)
        self._thread.start()

    def _restart_in_child(self) -> None:
        # The parent's thread does not exist here; its lock may be held by it forever.
        self.decisions.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="licentric-entitlements", daemon=True)
        self._thread.start()

    def check(self, entitlement: str, customer: str) -> EntitlementCheck:
        answer = self.decisions.answer(entitlement, customer)
        if answer is not None:
            return answer
        try:
            page = self._transport.request("getEntitlementSnapshot", query={"customer": customer})
        except LicentricError as exc:
            return self.decisions.unavailable(exc)
        return self.decisions.fetched(entitlement, customer, page)

    def stats(self) -> LocalStats:
        return self.decisions.stats()

    def close(self) -> None:
        self._stop.set()

    def _snapshot_pages(self) -> list[EntitlementPage]:
        size = self.decisions.options.page_size
        pages = [self._transport.request("getEntitlementSnapshot", query={"limit": size})]
        while pages[-1].has_more:
            after = pages[-1].data[-1].customer
            query = {"limit": size, "starting_after": after}
            pages.append(self._transport.request("getEntitlementSnapshot", query=query))
        return pages

    def _resync(self) -> None:
        if self.decisions.options.mode == "all":
            self.decisions.load(self._snapshot_pages())
        else:
            page = self._transport.request("getEntitlementSnapshot", query={"limit": 1})
            self.decisions.reset(page.cursor)

    def _follow(self) -> None:
        options = self.decisions.options
        while not self._stop.is_set():
            try:
                if self.decisions.cursor is None:
                    self._resync()
                    continue
                page = self._transport.request(
                    "listEntitlementChanges",
                    query={"cursor": self.decisions.cursor, "wait": options.wait, "limit": options.page_size},
                )
                self.decisions.apply(page)
            except Exception as exc:  # the feed outlives every failure; close() ends it
                if self._stop.is_set():
                    return
                if isinstance(exc, LicentricError) and exc.status == 410:
                    self.decisions.cursor = None  # resync at once
                    continue
                self.decisions.failed(exc)
                self._stop.wait(options.retry_delay)


class AsyncLocalEntitlements:
    """Local checks for `AsyncLicentric`, fed by a task of the running loop (started on first use)."""

    def __init__(self, transport: AsyncTransport, options: LocalOptions) -> None:
        self._transport = transport
        self.decisions = _Decisions(options)
        self._task: asyncio.Task[None] | None = None
        self._pid = os.getpid()

    async def start(self) -> None:
        """Take the first snapshot and start the feed task (check() does this on first use)."""
        if self._task is not None and not self._task.done() and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        try:
            await self._resync()
        except LicentricError as exc:
            self.decisions.failed(exc)
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def check(self, entitlement: str, customer: str) -> EntitlementCheck:
        if self._task is None or self._pid != os.getpid():
            await self.start()
        answer = self.decisions.answer(entitlement, customer)
        if answer is not None:
            return answer
        try:
            page = await self._transport.request("getEntitlementSnapshot", query={"customer": customer})
        except LicentricError as exc:
            return self.decisions.unavailable(exc)
        return self.decisions.fetched(entitlement, customer, page)

    def stats(self) -> LocalStats:
        return self.decisions.stats()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _resync(self) -> None:
        options = self.decisions.options
        if options.mode == "all":
            size = options.page_size
            pages = [await self._transport.request("getEntitlementSnapshot", query={"limit": size})]
            while pages[-1].has_more:
                query = {"limit": size, "starting_after": pages[-1].data[-1].customer}
                pages.append(await self._transport.request("getEntitlementSnapshot", query=query))
            self.decisions.load(pages)
        else:
            page = await self._transport.request("getEntitlementSnapshot", query={"limit": 1})
            self.decisions.reset(page.cursor)

    async def _follow(self) -> None:
        options = self.decisions.options
        while True:
            try:
                if self.decisions.cursor is None:
                    await self._resync()
                    continue
                page = await self._transport.request(
                    "listEntitlementChanges",
                    query={"cursor": self.decisions.cursor, "wait": options.wait, "limit": options.page_size},
                )
                self.decisions.apply(page)
            except Exception as exc:  # the feed outlives every failure; close() cancels it
                if isinstance(exc, LicentricError) and exc.status == 410:
                    self.decisions.cursor = None
                    continue
                self.decisions.failed(exc)
                await asyncio.sleep(options.retry_delay)
