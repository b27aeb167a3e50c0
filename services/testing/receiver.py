"""An HTTP receiver on 127.0.0.1 that records every request and answers as it is told: a stand-in
for PagerDuty, Slack or a webhook endpoint that can fail on demand.

>>> import httpx
>>> with Receiver() as hook:
...     hook.fail(Reply(503), Reply(429, {"Retry-After": "2"}))
...     [httpx.post(hook.url, content=b"{}").status_code for _ in range(3)], len(hook.requests)
([503, 429, 200], 3)

Replies are used in order, one a request; once they run out every request gets ``default``.
``Reply(delay=s)`` answers after ``s`` seconds (longer than the client's timeout: a timeout).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Listens on a free port of 127.0.0.1 from construction until :meth:`close`."""

    def __init__(self, default: Reply | None = None):
        self.default = default or Reply()
        self.requests: list[Received] = []
        self._script: list[Reply] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._arrived:
                    receiver.requests.append(Received("POST", self.path, headers, body, time.monotonic()))
                    reply = receiver._script.pop(0) if receiver._script else receiver.default
                    receiver._arrived.notify_all()
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)
        self._thread.start()

    def fail(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        with self._lock:
            self._script.extend(replies)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        """The requests once at least ``n`` have arrived; AssertionError after ``timeout``."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.requests) >= n, timeout):
                raise AssertionError(f"{len(self.requests)} requests arrived within {timeout} s, expected {n}")
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
