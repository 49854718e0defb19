"""The distributed system: beat and two real workers keep two real clusters in step with Git.

One stack (Git repo, fleet spec, 2 workers, beat) on its own Redis database runs
for the module; the tests follow a fleet through its life in order.
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest
import redis

from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(dev_fleet, redis_url, tmp_path_factory):
    from tests.conftest import new_redis_db

    s = Stack(tmp_path_factory.mktemp("orchestration"), new_redis_db(redis_url),
              dev_fleet.clusters)
    s.write_spec(["dev-1"])
    s.start_worker("w1")
    s.start_worker("w2")
    s.start_beat()
    yield s
    s.stop()


def core(kube_clients, cluster):
    from kubernetes import client

    return client.CoreV1Api(kube_clients[cluster])


def apps_api(kube_clients, cluster):
    from kubernetes import client

    return client.AppsV1Api(kube_clients[cluster])


def test_beat_and_workers_bring_clusters_ready_and_pick_up_an_added_cluster(stack, kube_clients):
    rev = stack.repo.head()
    stack.wait("dev-1 Ready", lambda: stack.ready_at("dev-1", rev), timeout=90)
    assert stack.status("dev-2")["phase"] == "Unknown"
    stack.write_spec(["dev-1", "dev-2"])                     # beat is running: no restart
    stack.wait("dev-2 Ready", lambda: stack.ready_at("dev-2", rev), timeout=60)
    for cluster in ("dev-1", "dev-2"):
        cm = core(kube_clients, cluster).read_namespaced_config_map("settings", stack.namespace)
        assert cm.data == {"value": "one", "cluster": cluster}
        assert stack.history(cluster)[-1]["trigger"] == "beat"


def test_drift_is_corrected_by_the_next_tick(stack, kube_clients):
    deployments = apps_api(kube_clients, "dev-1")
    deployments.patch_namespaced_deployment_scale("web", stack.namespace, {"spec": {"replicas": 5}})
    took = stack.wait("drift corrected", lambda: deployments.read_namespaced_deployment(
        "web", stack.namespace).spec.replicas == 2, timeout=30)
    assert took < 15
    assert any(e["changes"].get("configured") for e in stack.history("dev-1")[:5])


def test_a_git_change_reaches_every_targeted_cluster(stack, kube_clients):
    rev = stack.commit("value two", value="two", extra=True)
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} at {rev[:8]}", lambda c=cluster: stack.ready_at(c, rev), timeout=60)
        api = core(kube_clients, cluster)
        assert api.read_namespaced_config_map("settings", stack.namespace).data["value"] == "two"
        assert api.read_namespaced_config_map("extra", stack.namespace).data == {"x": "1"}


def test_simultaneous_syncs_of_one_unit_never_overlap_or_pile_up(stack):
    """While a slow apply runs (a slow wire to the API server), eight requests join one run."""
    from scheduler.client import Client
    from shared.settings import Settings

    locks = redis.Redis.from_url(stack.redis_url)
    with stack.slow_wire(["dev-1"], delay=0.4):
        stack.write_spec(["dev-1", "dev-2"])
        stack.wait("a slow apply in flight",
                   lambda: locks.exists(f"fleetsync:lock:dev-1/{stack.app}"), timeout=60)
        client = Client(Settings(redis_url=stack.redis_url))
        try:
            sent = [client.app.send_task("fleetsync.sync", args=[stack.app, "dev-1"])
                    for _ in range(8)]
            queued = {r.get(timeout=30)["units"][0]["run_id"] for r in sent}
        finally:
            client.close()
    assert len(queued) <= 2, f"eight requests queued {len(queued)} runs"
    stack.write_spec(["dev-1", "dev-2"])
    rev = stack.repo.head()
    stack.wait("Ready again", lambda: stack.ready_at("dev-1", rev), timeout=90)
    entries = stack.history("dev-1")
    intervals = sorted((_t(e["started_at"]), _t(e["finished_at"])) for e in entries)
    for (_, end), (start, _) in zip(intervals, intervals[1:]):
        assert end <= start, f"overlapping syncs: {intervals}"


def _t(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_worker_killed_mid_apply_does_not_stop_the_fleet_converging(stack):
    """Both workers die while applies crawl over a slow wire to the API servers."""
    locks = redis.Redis.from_url(stack.redis_url)
    with stack.slow_wire(["dev-1", "dev-2"], delay=0.4):
        stack.write_spec(["dev-1", "dev-2"])
        rev = stack.commit("value three", value="three", extra=True)
        stack.wait("an apply in flight", lambda: locks.exists(f"fleetsync:lock:dev-1/{stack.app}")
                   or locks.exists(f"fleetsync:lock:dev-2/{stack.app}"), timeout=60)
        for proc in [p for p in stack.procs if "worker" in " ".join(map(str, p.args))]:
            stack.kill(proc)
    stack.write_spec(["dev-1", "dev-2"])
    stack.start_worker("w3")
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} Ready after the kill", lambda c=cluster: stack.ready_at(c, rev),
                   timeout=90)
    stack.start_worker("w4")


def test_redis_flushed_recovers_and_prune_still_knows_what_to_delete(stack, kube_clients):
    redis.Redis.from_url(stack.redis_url).flushdb()
    rev = stack.commit("drop extra", value="three", extra=False)
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} Ready after flush", lambda c=cluster: stack.ready_at(c, rev),
                   timeout=90)
        names = [cm.metadata.name for cm in
                 core(kube_clients, cluster).list_namespaced_config_map(stack.namespace).items]
        assert "extra" not in names and "settings" in names
