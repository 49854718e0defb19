"""A loopback forge API for preview tests: GitHub's and GitLab's commit statuses and comments.

It keeps comments as the forges do (an id each, per pull request), answers the
listing, creation and edit of comments and notes, records every request
(method, path, headers, JSON body) and refuses a request without the token
it was given (401), so a test sees exactly what the server sent, in order;
``fail`` makes the next requests of a kind fail (a 502, a 404):

    GitHub  POST  /repos/{owner}/{repo}/statuses/{sha}
            GET   /repos/{owner}/{repo}/issues/{n}/comments
            POST  /repos/{owner}/{repo}/issues/{n}/comments        -> {"id": N}
            PATCH /repos/{owner}/{repo}/issues/comments/{id}
    GitLab  POST  /projects/{project}/statuses/{sha}
            GET   /projects/{project}/merge_requests/{iid}/notes
            POST  /projects/{project}/merge_requests/{iid}/notes   -> {"id": N}
            PUT   /projects/{project}/merge_requests/{iid}/notes/{id}
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlsplit

_LIST = re.compile(r"^/(repos/[^/]+/[^/]+/issues|projects/[^/]+/merge_requests)/(\d+)/"
                   r"(comments|notes)$")
_EDIT = re.compile(r"^/(?:repos/[^/]+/[^/]+/issues/comments|"
                   r"projects/[^/]+/merge_requests/\d+/notes)/(\d+)$")


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int


class ForgeApi:
    def __init__(self, token: str, gitlab: bool = False) -> None:
        self.token, self.gitlab = token, gitlab
        self.calls: list[Call] = []
        self.comments: dict[int, dict[str, Any]] = {}      # id -> {thread, body}
        self._ids = itertools.count(1001)
        self._failures: list[tuple[str, str, int]] = []    # (method, path part, status)
        self._lock = threading.Lock()
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length", 0) or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, answer = forge._answer(self.command, self.path, dict(self.headers), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = _any

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _authorized(self, headers: dict[str, str]) -> bool:
        lower = {k.lower(): v for k, v in headers.items()}
        if self.gitlab:
            return lower.get("private-token") == self.token
        return lower.get("authorization") == f"Bearer {self.token}"

    def _answer(self, method: str, target: str, headers: dict[str, str],
                body: Any) -> tuple[int, Any]:
        path = urlsplit(target).path
        with self._lock:
            failure = next((f for f in self._failures if f[0] == method and f[1] in path), None)
            if failure is not None:
                self._failures.remove(failure)
                status, answer = failure[2], {"message": "failed on purpose"}
            elif not self._authorized(headers):
                status, answer = 401, {"message": "Bad credentials"}
            else:
                status, answer = self._route(method, path, body)
            self.calls.append(Call(method, target, headers, body, status))
        return status, answer

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "POST" and "/statuses/" in path:
            return 201, {"id": next(self._ids), **(body or {})}
        listing, edit = _LIST.match(path), _EDIT.match(path)
        if listing and method == "GET":
            thread = listing.group(0)
            return 200, [{"id": i, "body": c["body"]} for i, c in sorted(self.comments.items())
                         if c["thread"] == thread]
        if listing and method == "POST":
            cid = next(self._ids)
            self.comments[cid] = {"thread": listing.group(0), "body": body["body"]}
            return 201, {"id": cid, "body": body["body"]}
        if edit and method in ("PATCH", "PUT"):
            cid = int(edit.group(1))
            if cid not in self.comments:
                return 404, {"message": "Not Found"}
            self.comments[cid]["body"] = body["body"]
            return 200, {"id": cid, "body": body["body"]}
        return 404, {"message": "Not Found"}

    def fail(self, method: str, part: str, *statuses: int) -> None:
        """Answer the next requests of ``method`` to a path containing ``part`` with
        ``statuses``, one each, before answering as the forge would."""
        with self._lock:
            self._failures += [(method, part, s) for s in statuses]

    def got(self, method: str | None = None, part: str = "") -> list[Call]:
        with self._lock:
            return [c for c in self.calls if (method is None or c.method == method)
                    and part in c.path]

    def statuses(self) -> list[dict[str, Any]]:
        return [c.body for c in self.got("POST", "/statuses/") if c.status < 300]

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} not seen in {timeout}s; got "
                             f"{[(c.method, c.path, c.status) for c in self.got()]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
