"""A local HTTP receiver for notification tests: it records every request it gets.

It plays a Slack incoming webhook, a generic JSON webhook and GitHub's commit
status API at once (any path), answering each path with the statuses queued
for it (``fail(path, 500, 500)``), then 200/201. ``redirect(path, 301, url)``
answers a path with a redirect instead; GETs are recorded too (a followed
redirect may arrive as one).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    method: str = "POST"


class Receiver:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[Received] = []
        self._answers: dict[str, list[int]] = {}
        self._redirects: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver._lock:
                    queued = receiver._answers.get(self.path, [])
                    status, location = receiver._redirects.get(self.path, (0, ""))
                    status = status or (queued.pop(0) if queued else
                                        (201 if "/statuses/" in self.path else 200))
                    receiver.requests.append(Received(self.path, dict(self.headers), body, status,
                                                      self.command))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def fail(self, path: str, *statuses: int) -> None:
        with self._lock:
            self._answers[path] = list(statuses)

    def redirect(self, path: str, status: int, location: str) -> None:
        with self._lock:
            self._redirects[path] = (status, location)

    def got(self, path: str | None = None, ok: bool = True) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if (path is None or r.path.startswith(path))
                    and (not ok or r.status < 300)]

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.1)
        raise AssertionError(f"{what} not received in {timeout}s; got "
                             f"{[(r.path, r.status, r.body) for r in self.got(ok=False)]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
