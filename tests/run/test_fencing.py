"""Never with a stale lock: a worker frozen mid-apply past its lock's TTL writes nothing when it
wakes, and a Redis that lost the fencing counter does not block a unit.

A real worker applies over a slow wire (tests/support/slowproxy.py: every request to the
real API server arrives late), so its apply is caught in the middle and the whole
worker is frozen with SIGSTOP. A second worker syncs a newer revision once the
lock expires. When the first wakes, the objects' resourceVersions and
managedFields do not move: none of its writes land.
"""

from __future__ import annotations

import os
import signal

import pytest
import redis

from shared.state import keys
from tests.conftest import new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def live_state(kube_clients, ns: str) -> dict[str, tuple[str, list]]:
    from kubernetes import client

    core = client.CoreV1Api(kube_clients["dev-1"])
    apps = client.AppsV1Api(kube_clients["dev-1"])
    out = {}
    for cm in core.list_namespaced_config_map(ns).items:
        if cm.metadata.name != "kube-root-ca.crt":
            out[f"cm/{cm.metadata.name}"] = (cm.metadata.resource_version,
                                            [(m.manager, m.operation) for m in cm.metadata.managed_fields])
    for dep in apps.list_namespaced_deployment(ns).items:
        out[f"deploy/{dep.metadata.name}"] = (dep.metadata.resource_version,
                                              [(m.manager, m.operation)
                                               for m in dep.metadata.managed_fields])
    return out


def test_a_worker_frozen_mid_apply_writes_nothing_when_it_wakes(dev_fleet, redis_url, tmp_path,
                                                                 kube_clients):
    from kubernetes import client

    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters)
    unit = f"dev-1/{stack.app}"
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    core = client.CoreV1Api(kube_clients["dev-1"])
    try:
        with stack.slow_wire(["dev-1"], delay=0.3):
            stack.write_spec(["dev-1"])
            frozen = stack.start_worker("frozen", "--concurrency", "1")
            stack.start_beat()
            stack.wait("Ready on the slow wire", lambda: stack.ready_at("dev-1", stack.repo.head()),
                       timeout=120)
            rev2 = stack.commit("value two, an extra object", value="two", extra=True)

            def applying_rev2() -> bool:
                running = r.get(f"fleetsync:running:{unit}")
                return bool(running and r.get(f"fleetsync:lock:{unit}")
                            and r.hget(keys.run(unit, running), "revision") == rev2)
            stack.wait("the apply of rev2 in flight", applying_rev2, timeout=90)
            os.killpg(frozen.pid, signal.SIGSTOP)
            caught = r.get(f"fleetsync:running:{unit}")
        try:
            stack.write_spec(["dev-1"])                 # the second worker on a normal wire
            rev3 = stack.commit("value three", value="three", extra=True)
            stack.start_worker("other", "--concurrency", "1")
            stack.wait("the other worker applied rev3 once the lock expired",
                       lambda: stack.ready_at("dev-1", rev3), timeout=120)
            assert core.read_namespaced_config_map("settings", stack.namespace).data["value"] \
                == "three"
            before = live_state(kube_clients, stack.namespace)
        finally:
            os.killpg(frozen.pid, signal.SIGCONT)
        # wherever it was caught (a write to come, or its last one done), the woken run ends
        # (or is retried under a new lock, at rev3) without changing a thing
        stack.wait("the woken worker's run is over and the unit quiet", lambda: (
            r.hget(keys.run(unit, caught), "state") == "done"
            and not r.get(f"fleetsync:lock:{unit}") and stack.ready_at("dev-1", rev3)),
            timeout=120)
        assert live_state(kube_clients, stack.namespace) == before
        assert core.read_namespaced_config_map("settings", stack.namespace).data["value"] == "three"
    finally:
        stack.stop()


def test_a_lost_fencing_counter_is_moved_past_the_clusters_inventory(dev_fleet, redis_url,
                                                                       tmp_path, kube_clients):
    from kubernetes import client

    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters)
    unit = f"dev-1/{stack.app}"
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        stack.write_spec(["dev-1"])
        stack.start_worker("w1")
        stack.start_beat()
        stack.wait("Ready", lambda: stack.ready_at("dev-1", stack.repo.head()), timeout=90)
        r.set(f"fleetsync:fence:{unit}", "1000000")     # a token far ahead, then lost
        rev2 = stack.commit("value two", value="two")
        stack.wait("Ready at rev2 with the high token",
                   lambda: stack.ready_at("dev-1", rev2), timeout=90)
        r.delete(f"fleetsync:fence:{unit}")             # as a flush or failover would
        rev3 = stack.commit("value three", value="three")
        stack.wait("Ready at rev3: the counter moved past the inventory's token",
                   lambda: stack.ready_at("dev-1", rev3), timeout=90)
        assert int(r.get(f"fleetsync:fence:{unit}") or 0) > 1000000
        core = client.CoreV1Api(kube_clients["dev-1"])
        assert core.read_namespaced_config_map("settings", stack.namespace).data["value"] == "three"
    finally:
        stack.stop()
