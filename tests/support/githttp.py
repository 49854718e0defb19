"""A real Git smart-HTTP server on loopback, with Basic auth, for tests.

``GitHttpServer(project_root, username, password)`` serves every bare repository
below ``project_root`` through ``git http-backend`` (run as a CGI per request)
behind a ``http.server`` that demands Basic auth (``username=None``: no auth).
Use it as a context manager; ``url(name)`` gives ``http://127.0.0.1:<port>/<name>``.
``tls=True`` serves HTTPS with a self-signed certificate for 127.0.0.1 made with
``openssl`` (``ca_file`` is what ``GIT_SSL_CAINFO`` must name): credentials are
only ever sent over HTTPS. ``fail_status`` makes every request fail with that
status (e.g. 503) and ``hang`` makes requests stall until the server stops, for
transient-error and timeout tests.

Pushes (``git-receive-pack``) are accepted from the authenticated user;
``readonly=(user, password)`` adds an account that may fetch but whose pushes get
403, as a read-only token would. ``on_request(method, path)``, when set, runs
before each request is served: a test's hook point (another clone pushes just
before a push's ref advertisement, say).
"""

from __future__ import annotations

import base64
import hmac
import ssl
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

BACKEND = "/usr/lib/git-core/git-http-backend"


class GitHttpServer:
    """``git http-backend`` behind Basic auth on 127.0.0.1:<free port>."""

    def __init__(self, project_root: Path | str, username: str | None = "fleet",
                 password: str = "s3cret-pw", *, fail_status: int | None = None,
                 hang: bool = False, tls: bool = False,
                 readonly: tuple[str, str] | None = None) -> None:
        self.project_root = Path(project_root)
        self.tls = tls
        self._certs = tempfile.TemporaryDirectory(prefix="githttp-") if tls else None
        self.username = username
        self.password = password
        self.fail_status = fail_status
        self.hang = hang
        self.readonly = readonly
        self.on_request: Callable[[str, str], None] | None = None
        self.requests: list[tuple[str, str, int]] = []   # (method, path, status)
        self.users: list[tuple[str, str]] = []           # (user, path) of authorized requests
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    def url(self, name: str) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/{name}"

    @property
    def ca_file(self) -> str:
        assert self._certs is not None, "not a TLS server"
        return str(Path(self._certs.name) / "cert.pem")

    def __enter__(self) -> "GitHttpServer":
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if self._certs is not None:
            self._server.socket = self._tls_context().wrap_socket(self._server.socket,
                                                                  server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        if self._certs is not None:
            self._certs.cleanup()

    def _tls_context(self) -> ssl.SSLContext:
        key = Path(self.ca_file).with_name("key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", self.ca_file],
                       check=True, capture_output=True, timeout=30)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, str(key))
        return context

    def authorized(self, header: str | None) -> bool:
        return self.user(header) is not None

    def user(self, header: str | None) -> str | None:
        """Who the Authorization header names ("" without auth), or None when refused."""
        if self.username is None:
            return ""
        accounts = [(self.username, self.password)] + ([self.readonly] if self.readonly else [])
        for name, password in accounts:
            expected = "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()
            if header is not None and hmac.compare_digest(header.encode(), expected.encode()):
                return name
        return None


class _Handler(BaseHTTPRequestHandler):
    owner: GitHttpServer

    def log_message(self, format: str, *args: object) -> None:  # quiet in test output
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        body = self._read_body()
        owner = self.owner
        if owner.hang:
            owner._stop.wait(30)
            return self._reply(503, {}, b"stopped\n")
        if owner.fail_status is not None:
            return self._reply(owner.fail_status, {}, b"unavailable\n")
        user = owner.user(self.headers.get("Authorization"))
        if user is None:
            return self._reply(401, {"WWW-Authenticate": 'Basic realm="git"'}, b"denied\n")
        owner.users.append((user, self.path))
        if owner.readonly and user == owner.readonly[0] and "git-receive-pack" in self.path:
            return self._reply(403, {}, b"read-only account\n")
        if owner.on_request is not None:
            owner.on_request(self.command, self.path)
        status, headers, payload = self._run_backend(body, user)
        self._reply(status, headers, payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _run_backend(self, body: bytes, user: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(self.path)
        env = {
            "GIT_PROJECT_ROOT": str(self.owner.project_root), "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": parts.path, "QUERY_STRING": parts.query,
            "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0], "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1", "PATH": "/usr/bin:/bin",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        proc = subprocess.run([BACKEND], input=body, env=env, capture_output=True, timeout=30)
        out = proc.stdout
        head, _, payload = out.partition(b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n")
        status, headers = 200, {}
        for line in head.decode(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers[key.strip()] = value.strip()
        return status, headers, payload

    def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        self.owner.requests.append((self.command, self.path, status))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
