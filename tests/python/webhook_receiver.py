"""A real webhook receiver for the delivery tests: an aiohttp server on 127.0.0.1, in a thread with its own
event loop, that records every request and answers what the test scripted.

    receiver = Receiver().start()              # the tests' fixture does this and stop()
    receiver.url("/a")                         # http://127.0.0.1:<port>/a
    receiver.script("/a", [Reply(500)] * 5)    # the next five requests to /a answer 500, then 200
    receiver.default("/slow", Reply(delay=1))  # every request to /slow answers 200 after a second
    receiver.requests("/a")                    # [Received(path, headers, body, started, ended, status)]
    receiver.wait(lambda: ..., timeout=10)
    receiver.max_concurrent                    # {(path, webhook-id): the most requests in flight at once}

A Reply may wait (delay, in seconds) before answering; hang=True waits until the server stops.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str | bytes = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    started: float  # time.monotonic() when the request arrived
    ended: float | None = None  # when the answer went (None: never answered)
    status: int | None = None

    @property
    def event_id(self) -> str:
        return self.headers.get("webhook-id", "")


class Receiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._defaults: dict[str, Reply] = {}
        self._received: list[Received] = []
        self._current: Counter[tuple[str, str]] = Counter()
        self.max_concurrent: Counter[tuple[str, str]] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    # Scripting

    def script(self, path: str, replies: list[Reply]) -> None:
        """The next requests to path get these replies in turn; then the path's default (200 "ok")."""
        with self._lock:
            self._scripts[path].extend(replies)

    def default(self, path: str, reply: Reply) -> None:
        with self._lock:
            self._defaults[path] = reply

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # What came

    def requests(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path is None or r.path == path]

    def answered(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests(path) if r.ended is not None]

    def wait(self, condition: Callable[[], bool], what: str = "the condition", timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"not within {timeout} s: {what}; received {len(self.requests())} requests")

    # Serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode()
        received = Received(request.path, dict(request.headers), body, time.monotonic())
        with self._lock:
            self._received.append(received)
            queue = self._scripts.get(request.path)
            reply = queue.popleft() if queue else self._defaults.get(request.path, Reply())
            event = (request.path, received.event_id)
            self._current[event] += 1
            self.max_concurrent[event] = max(self.max_concurrent[event], self._current[event])
        try:
            if reply.hang:
                assert self._stopping is not None
                await self._stopping.wait()
                raise ConnectionResetError("the receiver stopped")
            if reply.delay:
                await asyncio.sleep(reply.delay)
            response = web.Response(status=reply.status, body=reply.body, headers=reply.headers)
            received.status = reply.status
            received.ended = time.monotonic()
            return response
        finally:
            with self._lock:
                self._current[event] -= 1

    def start(self) -> Receiver:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._stopping = asyncio.Event()
            app = web.Application(client_max_size=1024**2)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(
                app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
            )
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the webhook receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        def halt() -> None:
            assert self._stopping is not None
            self._stopping.set()
            loop.stop()

        loop.call_soon_threadsafe(halt)
        self._thread.join(10)
        self._loop = None
