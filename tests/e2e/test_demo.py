"""The README's main job: `fleetsync demo` walks the tutorial on a local fleet and exits 0.

Each step checks real Pods (kwok runs them), so a pass here means: Pods 3/2/1
Running after the initial sync, 5 and back to 3 after a hand-made scale, the new
image rolled out Pod by Pod, a broken image left production Degraded (naming the
Deployment and ImagePullBackOff) while its old Pods kept serving until `git
revert`, the old image back, and api-service's Pods gone after prune.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
STEPS = ("initial sync", "drift", "update", "failed rollout", "rollback", "prune")


def test_demo_walks_every_step(k8s_binaries, tmp_path, isolated_redis_url):
    # Only what `make demo` builds: the clusters' binaries, and no helm, sops or age-keygen
    # on PATH or in the cache (an empty XDG cache).
    env = {**os.environ, "FLEETSYNC_REDIS_URL": isolated_redis_url,
           "FLEETSYNC_K8S_BIN": str(demo_binaries(tmp_path / "bin")),
           "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PATH": without_tools(os.environ["PATH"], ("helm", "sops", "age-keygen"))}
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "demo", "--interval", "3",
                           "--state-dir", str(tmp_path / "demo")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    for number, step in enumerate(STEPS, 1):
        assert re.search(rf"^\[{number}/6\] {step} +ok ", out, re.M), out
    assert out.count(" ok ") == 6
    assert "Pods Running 3/2/1" in out
    assert "5 Pods Running after" in out and "back at 3 Pods after" in out
    assert "rolled out Pod by Pod" in out and "never fewer than 3 serving" in out
    failed = out[out.index("[4/6] failed rollout"):out.index("[5/6]")]
    assert "nginx:broken in production" in failed and "2 other clusters Ready" in failed
    assert re.search(r"Degraded: .*Deployment/web/web-app.*ImagePullBackOff", failed), failed
    assert "3 Running on nginx:1.27.0, 1 Pending (ImagePullBackOff) on nginx:broken" in failed
    assert "git revert" in failed and "3 Pods on nginx:1.27.0" in failed
    assert "All 6 steps passed" in out and "Flower: http://127.0.0.1:" in out
    assert "Stopped every process the demo started." in out
    assert not (tmp_path / "demo" / "dev.json").exists()


def demo_binaries(into: Path) -> Path:
    """A FLEETSYNC_K8S_BIN holding exactly the binaries the demo needs."""
    from devtools.binaries import CONTROL_PLANE, WORKLOADS, find_binaries

    found = find_binaries(workloads=True)
    assert found is not None
    into.mkdir(parents=True)
    for name in CONTROL_PLANE + WORKLOADS:
        (into / name).symlink_to(found.path(name))
    return into


def without_tools(path: str, tools: tuple[str, ...]) -> str:
    """``path`` less its directories that hold one of ``tools``."""
    return os.pathsep.join(d for d in path.split(os.pathsep)
                           if not any(shutil.which(t, path=d) for t in tools))
