"""The fleet benchmark runs end to end on a tiny fleet (figures are reported, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

KEYS = {"cold_sync_s", "noop_pass_s", "noop_writes", "noop_requests_per_app",
        "commit_to_applied_s", "kubectl_loop_s", "worker_rss_mb"}


def test_fleet_bench_on_a_tiny_fleet(k8s_binaries, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "fleet_bench.py"), "--clusters", "1",
                           "--apps", "3", "--workers", "1", "--concurrency", "2",
                           "--timeout", "180", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert KEYS <= set(result)
    assert result["noop_writes"] == 0
    assert result["apps"] == 3 and result["cold_sync_s"] > 0
    assert "cold_sync_s" in proc.stdout


def test_render_bench_runs(tmp_path):
    out = tmp_path / "render.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "render_bench.py"), "--runs", "2",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"plain_render_ms", "kustomize_render_ms", "cache_hit_ms"} <= set(json.loads(out.read_text()))
