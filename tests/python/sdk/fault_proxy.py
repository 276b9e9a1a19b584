"""A fault-injecting HTTP proxy in front of a real server: each request takes the next scripted fault
(or the standing `mode`), else is forwarded. Faults: ("status", code, headers) answers that status without
forwarding; "reset" resets the connection without forwarding; "lose" forwards, then resets instead of
answering (the server did the work, the client never hears of it)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: deque[Any] = deque()
        self.mode: Any = None  # a fault for every request while set (an outage)
        self.seen: list[tuple[float, str, str, dict[str, str]]] = []  # (time, method, path, headers)
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=upstream, timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                with proxy._lock:
                    proxy.seen.append((time.monotonic(), self.command, self.path, headers))
                    fault = proxy.faults.popleft() if proxy.faults else proxy.mode
                if fault == "reset":
                    return self._reset()
                if isinstance(fault, tuple) and fault[0] == "status":
                    _, status, extra = fault
                    return self._answer(
                        status,
                        {"Content-Type": "application/json", **extra},
                        b'{"error": {"type": "api_error", "code": "injected", "message": "injected fault"}}',
                    )
                answer = proxy._http.request(self.command, self.path, headers=headers, content=body)
                if fault == "lose":
                    return self._reset()
                passed = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower() not in HOP_BY_HOP | {"content-encoding"}
                }
                self._answer(answer.status_code, passed, answer.content)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _reset(self) -> None:
                # SO_LINGER 0: close() sends a TCP RST, as a crashed peer or a dropped connection does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def requests(self, method: str, path_prefix: str) -> list[tuple[float, str, str, dict[str, str]]]:
        return [r for r in self.seen if r[1] == method and r[2].startswith(path_prefix)]
