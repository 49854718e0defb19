"""TLS, basic auth and a Bearer token exchange in front of an in-memory OCI registry.

go-containerregistry's ``registry`` speaks the distribution API over plain HTTP
and lets anyone push. Registries people use answer ``401`` with
``WWW-Authenticate: Basic realm=...`` (basic auth) or
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` (a token service:
the client fetches a token from the realm with its credentials, then retries
with ``Authorization: Bearer``). This proxy adds that on loopback so the local
fleet and the tests see a registry as they are in the wild:

- ``auth="none"`` forwards everything; ``"basic"`` wants ``users``' passwords on
  every request; ``"token"`` wants a token from ``/token`` (on the proxy, or on a
  second port with ``separate_realm``: another origin, as Docker Hub's
  ``auth.docker.io``).
- With ``tls`` the port speaks HTTPS; a plain-HTTP request sent to it anyway is
  recorded in ``plain`` and answered 400 (what a client sent in clear there).
- Every request is recorded in ``requests`` (method, path, Authorization
  header): tests check where credentials went and how often a blob was read.
- ``inject(substring, status, times)`` answers the next ``times`` requests whose
  path contains ``substring`` with ``status`` (a 503, a 429); ``tamper(substring)``
  flips one bit of those bodies (a replaced blob or manifest, same size);
  ``redirect(substring, base)`` sends those (once authorized) to another origin.

Bodies stream through both ways (``Content-Length`` or chunked), so a large
blob is never held in memory. ``python -m devtools.registryproxy`` runs one as a
process for ``fleetsync dev up --registry``.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import http.client
import http.server
import json
import re
import secrets
import socket
import ssl
import threading
from dataclasses import dataclass, field
from io import BufferedIOBase
from typing import Any, Iterator
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}
SERVICE = "fleetsync-registry"
CHUNK = 1 << 16
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(manifests|blobs|tags)/")


@dataclass
class Recorded:
    method: str
    path: str
    authorization: str | None


@dataclass
class _State:
    """What the handlers share; guarded by ``lock`` where threads write."""

    upstream: tuple[str, int]
    auth: str
    users: dict[str, str]
    realm: str = ""
    tls: bool = False
    tokens: set[str] = field(default_factory=set)
    requests: list[Recorded] = field(default_factory=list)
    plain: list[Recorded] = field(default_factory=list)
    faults: list[list[Any]] = field(default_factory=list)      # [substring, status, times]
    tampered: list[str] = field(default_factory=list)          # path substrings
    redirects: list[tuple[str, str]] = field(default_factory=list)   # (substring, base URL)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Limited:
    """``n`` bytes of ``stream``, then EOF: a request body of known length, read in chunks."""

    def __init__(self, stream: BufferedIOBase, n: int) -> None:
        self.stream, self.left = stream, n

    def read(self, size: int = CHUNK) -> bytes:
        if self.left <= 0:
            return b""
        data = self.stream.read(min(size if size > 0 else CHUNK, self.left))
        self.left -= len(data)
        return data


def _chunks(stream: BufferedIOBase) -> Iterator[bytes]:
    """Decode a chunked request body."""
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):
                pass
            return
        yield stream.read(size)
        stream.readline()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        self._body_taken = False
        state = self.server.state
        entry = Recorded(self.command, self.path, self.headers.get("Authorization"))
        with state.lock:
            state.requests.append(entry)
        if state.tls and not isinstance(self.connection, ssl.SSLSocket):
            with state.lock:
                state.plain.append(entry)
            return self._reply(400, {"errors": [{"code": "DENIED", "message": "plain HTTP "
                                                  "sent to an HTTPS port"}]})
        if urlsplit(self.path).path == "/token":
            return self._token()
        if self.server.token_only:
            return self._reply(404, {"errors": [{"code": "NOT_FOUND"}]})
        status = self._fault()
        if status:
            return self._reply(status, {"errors": [{"code": "UNAVAILABLE"}]}, {"Retry-After": "1"})
        if not self._authorized():
            return self._challenge()
        with state.lock:
            to = next((base for sub, base in state.redirects if sub in self.path), None)
        if to and self.command in ("GET", "HEAD"):
            return self._reply(307, {}, {"Location": to + self.path})
        self._forward()

    def _fault(self) -> int:
        state = self.server.state
        with state.lock:
            for fault in state.faults:
                if fault[0] in self.path and fault[2] > 0:
                    fault[2] -= 1
                    return int(fault[1])
        return 0

    def _basic_user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        known = self.server.state.users.get(user)
        if known is not None and hmac.compare_digest(known.encode(), password.encode()):
            return user
        return None

    def _authorized(self) -> bool:
        state = self.server.state
        if state.auth == "none":
            return True
        if state.auth == "basic":
            return self._basic_user() is not None
        header = self.headers.get("Authorization", "")
        with state.lock:
            return header.startswith("Bearer ") and header[7:] in state.tokens

    def _challenge(self) -> None:
        state = self.server.state
        if state.auth == "basic":
            header = f'Basic realm="{SERVICE}"'
        else:
            header = f'Bearer realm="{state.realm}",service="{SERVICE}"'
            match = _REPO_PATH.match(urlsplit(self.path).path)
            if match:
                actions = "pull" if self.command in ("GET", "HEAD") else "pull,push"
                header += f',scope="repository:{match["name"]}:{actions}"'
        self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication "
                                      "required"}]}, {"WWW-Authenticate": header})

    def _token(self) -> None:
        if self._basic_user() is None:
            return self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad "
                                                 "credentials"}]},
                               {"WWW-Authenticate": f'Basic realm="{SERVICE}"'})
        token = secrets.token_urlsafe(24)
        with self.server.state.lock:
            self.server.state.tokens.add(token)
        self._reply(200, {"token": token, "access_token": token, "expires_in": 300})

    def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self._drain()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drain(self) -> None:
        """Read an unanswered request body so the connection can carry the next request."""
        body = self._body()
        if isinstance(body, _Limited):
            while body.read():
                pass
        elif body is not None:
            for _ in body:
                pass

    def _body(self) -> Iterator[bytes] | _Limited | None:
        if self._body_taken:
            return None
        self._body_taken = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _chunks(self.rfile)
        length = int(self.headers.get("Content-Length") or 0)
        return _Limited(self.rfile, length) if length else None

    def _forward(self) -> None:
        state = self.server.state
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in HOP_BY_HOP | {"authorization", "content-length"}}
        body = self._body()
        if isinstance(body, _Limited):
            headers["Content-Length"] = str(body.left)
        conn = http.client.HTTPConnection(*state.upstream, timeout=120)
        try:
            conn.request(self.command, self.path, body=body, headers=headers,   # type: ignore[arg-type]
                         encode_chunked=not isinstance(body, _Limited) and body is not None)
            resp = conn.getresponse()
            self._relay(resp)
        except OSError as exc:
            self._reply(502, {"errors": [{"code": "UNAVAILABLE", "message": str(exc)}]})
        finally:
            conn.close()

    def _relay(self, resp: http.client.HTTPResponse) -> None:
        length = resp.getheader("Content-Length")
        data = None
        if length is None and self.command != "HEAD" and resp.status not in (204, 304):
            data = resp.read()
        with self.server.state.lock:
            tamper = any(t in self.path for t in self.server.state.tampered)
        if tamper and self.command == "GET" and resp.status == 200:
            body = bytearray(data if data is not None else resp.read())
            if body:
                body[len(body) // 2] ^= 0x01        # one bit: same size, another digest
            data = bytes(body)
        self.send_response(resp.status, resp.reason)
        for name, value in resp.getheaders():
            if name.lower() not in HOP_BY_HOP | {"content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data) if data is not None else length or 0))
        self.end_headers()
        if self.command == "HEAD":
            return
        if data is not None:
            self.wfile.write(data)
            return
        while chunk := resp.read(CHUNK):
            self.wfile.write(chunk)


class _Server(http.server.ThreadingHTTPServer):
    """TLS when ``context`` is set; a plain-HTTP request to that port is still read (and refused)."""

    daemon_threads = True

    def __init__(self, state: _State, context: ssl.SSLContext | None, port: int = 0,
                 token_only: bool = False) -> None:
        self.state, self.context, self.token_only = state, context, token_only
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # In the request's own thread: a slow TLS handshake never holds up accept().
        if self.context is not None:
            try:
                if request.recv(1, socket.MSG_PEEK) == b"\x16":       # a TLS hello
                    request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class RegistryProxy:
    """A loopback front for the registry at ``upstream`` (host, port), served from threads."""

    def __init__(self, upstream: tuple[str, int], *, auth: str = "none",
                 users: dict[str, str] | None = None, cert: str | None = None,
                 key: str | None = None, port: int = 0, separate_realm: bool = False) -> None:
        if auth not in ("none", "basic", "token"):
            raise ValueError(f"auth must be none, basic or token, not {auth!r}")
        context = None
        if cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        self.state = _State(upstream, auth, dict(users or {}), tls=context is not None)
        self._servers = [_Server(self.state, context, port)]
        scheme = "https" if context else "http"
        self.url = f"{scheme}://127.0.0.1:{self._servers[0].server_address[1]}"
        self.host = self.url.split("://", 1)[1]
        if separate_realm:
            self._servers.append(_Server(self.state, context, token_only=True))
            self.realm_origin = f"{scheme}://127.0.0.1:{self._servers[1].server_address[1]}"
        else:
            self.realm_origin = self.url
        self.state.realm = f"{self.realm_origin}/token"
        for server in self._servers:
            threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()

    @property
    def requests(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.requests)

    @property
    def plain(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.plain)

    def inject(self, substring: str, status: int, times: int = 1) -> None:
        with self.state.lock:
            self.state.faults.append([substring, status, times])

    def redirect(self, substring: str, base: str) -> None:
        """Answer authorized GETs whose path contains ``substring`` with a 307 to ``base`` +
        the path (a registry sending blob downloads to a storage host)."""
        with self.state.lock:
            self.state.redirects.append((substring, base))

    def tamper(self, substring: str) -> None:
        """Flip one bit of every 200 body whose path contains ``substring`` (a swapped blob)."""
        with self.state.lock:
            self.state.tampered.append(substring)

    def clear(self) -> None:
        with self.state.lock:
            self.state.tampered.clear()
            self.state.redirects.clear()
            self.state.requests.clear()
            self.state.plain.clear()
            self.state.faults.clear()

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.registryproxy",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the plain registry")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth", choices=("none", "basic", "token"), default="basic")
    parser.add_argument("--users-file", help="JSON {user: password} (mode 0600)")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    users = json.loads(open(args.users_file).read()) if args.users_file else {}
    proxy = RegistryProxy((host, int(port)), auth=args.auth, users=users, cert=args.cert,
                          key=args.key, port=args.port)
    print(f"serving {proxy.url} in front of {args.upstream}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
