"""``fleetsync dev up --registry`` through the CLI: a registry a chart can be pushed to with
the real helm over TLS and basic auth, listed in ``dev.json`` and stopped by ``dev down``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import fleet as devfleet
from tests.conftest import ROOT
from tests.support.helmutil import chart, helm, run  # noqa: F401  (helm: a fixture)
from tests.support.registry import tool

pytestmark = pytest.mark.k8s


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=180)


def test_dev_up_registry_takes_a_helm_push_and_down_stops_it(dev_fleet, redis_url: str,
                                                             helm: Path, tmp_path: Path) -> None:
    tool("registry")
    state_dir = tmp_path / "s"
    proc = _cli("dev", "up", "--names", "reg", "--no-workloads", "--registry",
                "--state-dir", str(state_dir), FLEETSYNC_REDIS_URL=redis_url)
    try:
        assert proc.returncode == 0, proc.stderr
        state = devfleet.read_state(state_dir)
        assert state is not None and {"registry", "registry-proxy"} <= {p.name for p in state.processes}
        reg = state.registry
        assert f"registry: oci://{reg['host']}  user fleetsync, password in" in proc.stdout
        password = Path(reg["password_file"]).read_text()
        assert password not in proc.stdout + proc.stderr
        assert Path(reg["password_file"]).stat().st_mode & 0o077 == 0
        directory = chart(helm, tmp_path, "web", "0.4.0", hook=False)
        run(helm, "package", str(directory), "-d", str(tmp_path))
        env = {"HOME": str(tmp_path), "PATH": os.defpath,
               "HELM_REGISTRY_CONFIG": str(tmp_path / "registry.json")}
        pushed = subprocess.run([str(helm), "push", str(tmp_path / "web-0.4.0.tgz"),
                                 f"oci://{reg['host']}/charts", "--ca-file", reg["ca_file"],
                                 "--username", reg["user"], "--password", password],
                                env=env, capture_output=True, text=True, timeout=120)
        assert pushed.returncode == 0, pushed.stderr
        assert re.search(r"Digest: sha256:[0-9a-f]{64}", pushed.stdout + pushed.stderr)
        denied = subprocess.run([str(helm), "push", str(tmp_path / "web-0.4.0.tgz"),
                                 f"oci://{reg['host']}/charts", "--ca-file", reg["ca_file"],
                                 "--username", reg["user"], "--password", "wrong"],
                                env=env, capture_output=True, text=True, timeout=120)
        assert denied.returncode != 0
    finally:
        assert _cli("dev", "down", "--state-dir", str(state_dir)).returncode == 0
    assert state is not None
    assert not any(devfleet.pid_alive(p.pid) for p in state.processes)
    assert not (state_dir / "registry").exists()
