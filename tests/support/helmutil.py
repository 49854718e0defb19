"""Real Helm charts and a real Helm repository for tests.

``chart(helm, dir)`` runs ``helm create`` (the chart every Helm user starts from)
and adds a ``pre-upgrade`` hook Job, so hook objects travel through the render;
``ChartServer`` packages charts with ``helm package``, indexes them with
``helm repo index`` and serves the directory over loopback HTTP from a thread,
counting the requests each path gets (a chart is downloaded once per host) and
keeping the ``Authorization`` header each request carried. ``tls=True`` serves
HTTPS with a self-signed certificate for 127.0.0.1 (``ca_file``: what
``SSL_CERT_FILE`` must name) and answers a plain-HTTP request on the same port
with 400 after recording it in ``plain``: what a client sent in clear there.
"""

from __future__ import annotations

import functools
import http.server
import os
import socket
import ssl
import subprocess
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from devtools.binaries import BinaryError, find_helm
from tests.conftest import need

HOOK_JOB = """apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "web.fullname" . }}-migrate
  annotations:
    "helm.sh/hook": pre-install,pre-upgrade
    "helm.sh/hook-weight": "-5"
    "helm.sh/hook-delete-policy": before-hook-creation
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: "busybox:1.36"
          command: ["true"]
"""


def helm_binary() -> Path:
    try:
        found = find_helm()
    except BinaryError as exc:
        need("helm", str(exc))
    if found is None:
        need("helm", "run `fleetsync dev build` (or .ci/run) first")
    return found


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_binary()


def run(helm: Path, *args: str, cwd: Path | None = None) -> str:
    home = Path(os.environ.get("TMPDIR", "/tmp"))
    env = {"HOME": str(home), "PATH": os.defpath, "HELM_CACHE_HOME": str(home / "helm-cache"),
           "HELM_CONFIG_HOME": str(home / "helm-config"), "HELM_DATA_HOME": str(home / "helm-data")}
    done = subprocess.run([str(helm), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def chart(helm: Path, parent: Path, name: str = "web", version: str = "0.1.0",
          hook: bool = True) -> Path:
    """``helm create name`` in ``parent`` at ``version``, with a pre-upgrade hook Job unless
    ``hook`` is false (a bare control plane never completes a Job)."""
    run(helm, "create", name, cwd=parent)
    directory = parent / name
    set_version(directory, version)
    if hook:
        (directory / "templates" / "migrate-job.yaml").write_text(
            HOOK_JOB.replace("web.fullname", f"{name}.fullname"))
    return directory


def set_version(directory: Path, version: str) -> None:
    text = (directory / "Chart.yaml").read_text()
    lines = [f"version: {version}" if line.startswith("version:") else line
             for line in text.splitlines()]
    (directory / "Chart.yaml").write_text("\n".join(lines) + "\n")


class _Handler(http.server.SimpleHTTPRequestHandler):
    counts: Counter[str]
    authorization: dict[str, list[str | None]]
    plain: list[tuple[str, str | None]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.counts[self.path] += 1
        header = self.headers.get("Authorization")
        self.authorization.setdefault(self.path, []).append(header)
        if not isinstance(self.connection, ssl.SSLSocket) and self.server.tls:  # type: ignore[attr-defined]
            self.plain.append((self.path, header))
            self.send_error(400, "plain HTTP sent to an HTTPS port")
            return
        super().do_GET()


class _Server(http.server.ThreadingHTTPServer):
    """Serves TLS, or plain HTTP when a client sends that to the TLS port (to record it)."""

    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        if self.tls is not None and conn.recv(1, socket.MSG_PEEK) == b"\x16":  # a TLS hello
            conn = self.tls.wrap_socket(conn, server_side=True)
        return conn, addr


class ChartServer:
    """A Helm repository served from ``root`` on a loopback port, in a thread."""

    def __init__(self, helm: Path, root: Path, *, tls: bool = False) -> None:
        self.helm = helm
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.counts: Counter[str] = Counter()
        self.authorization: dict[str, list[str | None]] = {}
        self.plain: list[tuple[str, str | None]] = []
        handler = type("Handler", (_Handler,), {"counts": self.counts, "plain": self.plain,
                                                "authorization": self.authorization})
        self._certs = tempfile.TemporaryDirectory(prefix="helmrepo-") if tls else None
        self.server = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        self.server.tls = self._tls_context() if tls else None
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def ca_file(self) -> str:
        assert self._certs is not None, "not a TLS server"
        return str(Path(self._certs.name) / "cert.pem")

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

    def publish(self, *charts: Path) -> None:
        """Package ``charts`` into the repository and index it again."""
        for directory in charts:
            run(self.helm, "package", str(directory), "-d", str(self.root))
        run(self.helm, "repo", "index", str(self.root), "--url", self.url)

    def archive(self, name: str, version: str) -> Path:
        return self.root / f"{name}-{version}.tgz"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._certs is not None:
            self._certs.cleanup()
