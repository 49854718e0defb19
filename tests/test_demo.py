"""The README's main job: `fleetsync demo` walks the tutorial on a local fleet and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def test_demo_walks_every_step(k8s_binaries, tmp_path, isolated_redis_url):
    env = {**os.environ, "FLEETSYNC_REDIS_URL": isolated_redis_url}
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "demo", "--interval", "3",
                           "--state-dir", str(tmp_path / "demo")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for step in ("initial sync", "drift", "update", "rollback", "prune"):
        assert f"{step}" in proc.stdout
    assert proc.stdout.count(" ok ") == 5
    assert "All 5 steps passed" in proc.stdout and "Flower: http://127.0.0.1:" in proc.stdout
    assert "Stopped every process the demo started." in proc.stdout
    assert not (tmp_path / "demo" / "dev.json").exists()
