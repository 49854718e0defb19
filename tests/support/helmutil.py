"""Real Helm charts and a real Helm repository for tests.

``chart(helm, dir)`` runs ``helm create`` (the chart every Helm user starts from)
and adds a ``pre-upgrade`` hook Job, so hook objects travel through the render;
``ChartServer`` packages charts with ``helm package``, indexes them with
``helm repo index`` and serves the directory over loopback HTTP from a thread,
counting the requests each path gets (a chart is downloaded once per host).
"""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
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

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.counts[self.path] += 1
        super().do_GET()


class ChartServer:
    """A Helm repository served from ``root`` on a loopback port, in a thread."""

    def __init__(self, helm: Path, root: Path) -> None:
        self.helm = helm
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.counts: Counter[str] = Counter()
        handler = type("Handler", (_Handler,), {"counts": self.counts})
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

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
