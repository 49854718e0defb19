"""The fleet benchmark runs end to end on a tiny fleet (figures are reported, not asserted),
and its pure parts (layout of simulated clusters, snapshot comparison) hold."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))

import fleet_layout  # noqa: E402
import kubeapi  # noqa: E402

KEYS = {"cold_sync_s", "limit_cold_s", "cold_vs_limit", "noop_pass_s", "noop_changed_objects",
        "noop_requests_per_app", "noop_requests_by_verb", "limit_list_s", "commit_to_applied_s",
        "limit_validated_s", "validated_vs_limit", "cold_vs_validated",
        "kubectl_loop_s", "worker_rss_mb", "worker_pss_mb", "redis_bytes_per_unit",
        "beat_ticks", "beat_tick_cpu_ms", "load_average", "code"}


@pytest.mark.k8s
@pytest.mark.slow
def test_fleet_bench_on_a_tiny_fleet(k8s_binaries, tmp_path):
    """Two simulated clusters on one apiserver, two apps each: every unit synced, a no-op
    pass that writes nothing (from resourceVersions), the limit and the kubectl loop."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "fleet_bench.py"), "--clusters", "2",
                           "--apps", "2", "--apiservers", "1", "--workers", "1", "--concurrency", "2",
                           "--idle-window", "1", "--timeout", "180", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert KEYS <= set(result), KEYS - set(result)
    assert result["units"] == 4 and result["apiservers"] == 1 and result["cold_sync_s"] > 0
    assert result["noop_changed_objects"] == 0, result["noop_changed_examples"]
    assert result["noop_objects_checked"] >= 4 * 4 + 4      # 4 objects per unit, 4 inventories
    assert result["limit_objects"] == 16 and result["limit_list_objects"] == 16
    assert "cold_sync_s" in proc.stdout


def test_simulated_clusters_are_spread_round_robin_with_apps_of_their_own(tmp_path):
    servers = {}
    for name in ("api-1", "api-2"):
        servers[name] = str(tmp_path / f"{name}.yaml")
        (tmp_path / f"{name}.yaml").write_text(json.dumps({"server": name}))
    fleet = fleet_layout.layout(tmp_path, servers, clusters=5, apps=2)
    assert list(fleet.placement.values()) == ["api-1", "api-2", "api-1", "api-2", "api-1"]
    assert len(set(fleet.clusters.values())) == 5                 # a kubeconfig file each
    assert json.loads(open(fleet.clusters["c0002"]).read()) == {"server": "api-2"}
    assert fleet.apps["c0003"] == ["c0003-app-0001", "c0003-app-0002"]
    assert fleet.units == 10 and len(set(fleet.all_apps())) == 10
    fleet_layout.write_fleet_spec(tmp_path / "fleet.yaml", tmp_path / "repo.git", fleet)
    text = (tmp_path / "fleet.yaml").read_text()
    assert "  - name: c0003-app-0002\n    source: bench\n    path: apps/c0003-app-0002\n" \
           "    clusters: {names: [c0003]}\n" in text


def test_snapshot_changes_name_written_created_and_deleted_objects():
    before = {("Service", "0/bench", "a"): ("10", {"fleetsync": "t1"}),
              ("Service", "0/bench", "b"): ("11", {"fleetsync": "t1"}),
              ("ConfigMap", "0/fleetsync-system", "gone"): ("12", {})}
    after = {("Service", "0/bench", "a"): ("10", {"fleetsync": "t1"}),
             ("Service", "0/bench", "b"): ("15", {"fleetsync": "t1", "kubectl": "t2"}),
             ("Service", "0/bench", "new"): ("16", {"fleetsync": "t2"})}
    changed, managers = kubeapi.changes(before, after)
    assert changed == [("ConfigMap", "0/fleetsync-system", "gone"), ("Service", "0/bench", "b"),
                       ("Service", "0/bench", "new")]
    assert managers == {"kubectl", "fleetsync"}
    assert kubeapi.changes(after, after) == ([], set())
    assert kubeapi.count_delta({("GET", "x"): 3.0}, {("GET", "x"): 5.0, ("LIST", "y"): 0.0}) \
        == {("GET", "x"): 2}


@pytest.mark.k8s
@pytest.mark.slow
def test_render_bench_runs(tmp_path):
    out = tmp_path / "render.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "render_bench.py"), "--runs", "2",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {"plain_render_ms", "kustomize_render_ms", "cache_hit_ms"} <= set(json.loads(out.read_text()))
