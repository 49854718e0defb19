"""The fleet on Redis Sentinel: the primary dies during a sync storm, the replica is
promoted, and the fleet converges with nothing lost and no apply repeated beyond what
the sync-unit protocol allows. Two worker groups with caches of their own (as on two
hosts) share the work through nothing but the same ``FLEETSYNC_REDIS_URL``.

Real processes throughout: a primary, a replica and two sentinels (``redis-server``
and ``redis-server --sentinel``), workers and beat as ``fleetsync`` runs them, and a
real kube-apiserver.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter

import pytest

from shared.state.redisconn import connect
from shared.state.status import StatusStore
from tests.support.sentinel import SentinelSet
from tests.support.stack import Stack, configmap

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

APPS = 40
CLUSTER = "dev-1"


class SentinelStack(Stack):
    """A ``Stack`` whose observers reach Redis through the Sentinel URL too."""

    @property
    def store(self) -> StatusStore:
        return StatusStore(connect(self.redis_url))


def _write_apps(stack: Stack, names: list[str], value: str) -> None:
    for i, name in enumerate(names):
        namespace = f"ns-{name}"
        stack.repo.write(f"apps/{i:02d}/namespace.yaml", json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}))
        stack.repo.write(f"apps/{i:02d}/config.yaml", configmap("settings", namespace,
                                                                {"value": value}))


def _write_spec(stack: Stack, names: list[str]) -> None:
    lines = ["sources:", "  - name: git", f"    url: {stack.repo.bare_url()}", "    branch: main",
             f"    interval: {stack.interval}s", "clusters:", f"  - name: {CLUSTER}",
             f"    kubeconfig: {stack.kubeconfigs[CLUSTER]}", f"    interval: {stack.interval}s",
             "applications:"]
    for i, name in enumerate(names):
        lines += [f"  - name: {name}", "    source: git", f"    path: apps/{i:02d}",
                  f"    clusters: {{names: [{CLUSTER}]}}", "    prune: true", "    wait: false"]
    stack.spec.write_text("\n".join(lines) + "\n")


def _protocol_keys(client) -> list[str]:
    return [k for pattern in ("running", "lock") for k in client.scan_iter(f"fleetsync:{pattern}:*")]


def _at(store: StatusStore, names: list[str], revision: str) -> int:
    """How many units are Ready at ``revision``."""
    statuses = (store.get_status(name, CLUSTER) for name in names)
    return sum(str(s.phase) == "Ready" and s.revision == revision for s in statuses)


def _all_ready(store: StatusStore, names: list[str], revision: str) -> bool:
    return _at(store, names, revision) == len(names)


def test_the_primary_fails_during_a_sync_storm_and_the_fleet_converges(
        dev_fleet, kube_clients, tmp_path):
    """SIGKILL the primary while runs of a new commit are in flight on 40 units.

    The bound on applies: replication to the replica is asynchronous, so the last writes
    before the failover can be lost: a run's ending (its record, the unit's status and
    history entry, written together) or a task message. The unit then runs that revision
    again (a lost message: the next tick's request, once the queued run is presumed lost;
    a lost lock: the run is taken up again). A repeated run plans against the live objects
    the first one wrote, finds them unchanged and writes nothing; a worker still holding
    a lock the new primary forgot is kept out by the per-unit fence (the lock holder
    moves the token past the one in the cluster's inventory) and the inventory's
    resourceVersion precondition. So per unit and revision: at most one run that wrote,
    and no run recorded twice.
    """
    from kubernetes import client as k8s
    from workers.sealing import default_key_file

    sentinels = SentinelSet(tmp_path / "redis").start()
    # a tick of 40 requests takes a while on a loaded machine: ticks closer than that
    # pile up in the reconcile queue ahead of the renders and applies
    stack = SentinelStack(tmp_path, sentinels.url, dev_fleet.clusters, interval=8)
    suffix = uuid.uuid4().hex[:5]
    names = [f"st{suffix}-{i:02d}" for i in range(APPS)]
    key_file = str(default_key_file(tmp_path / "shared-key"))   # every worker's render key
    try:
        _write_apps(stack, names, "one")
        stack.repo.commit("forty applications")
        stack.repo.push()
        first = stack.repo.head()
        _write_spec(stack, names)
        for group in ("a", "b"):    # as on two hosts: own cache, same URL (and render key)
            stack.start_worker(f"group-{group}", FLEETSYNC_CACHE_DIR=str(tmp_path / f"cache-{group}"),
                               FLEETSYNC_CACHE_KEY_FILE=key_file)
        stack.start_beat()
        store = stack.store
        # generous bounds: they are reached in seconds on a quiet machine, and a CI
        # machine shared with other builds must not turn load into a failure
        cold = stack.wait("every unit Ready at the first commit",
                          lambda: _all_ready(store, names, first), timeout=240)

        _write_apps(stack, names, "two")
        second = stack.repo.commit("value two everywhere")
        stack.repo.push()
        observer = connect(sentinels.url)
        deadline = time.monotonic() + 120
        while True:                  # the storm is on: some units at the new commit, not all
            done = _at(store, names, second)
            if 0 < done < APPS and _protocol_keys(observer):
                break
            assert done < APPS, "the storm ended before the primary could be failed"
            assert time.monotonic() < deadline, "no run of the new commit ended"
            time.sleep(0.01)
        in_flight = len(_protocol_keys(observer))
        promoted_after = sentinels.fail_primary()

        converged = stack.wait("every unit Ready at the second commit after the failover",
                               lambda: _all_ready(store, names, second), timeout=240)

        core = k8s.CoreV1Api(kube_clients[CLUSTER])
        for name in names:
            live = core.read_namespaced_config_map("settings", f"ns-{name}")
            assert live.data == {"value": "two"}, (name, live.data)

        writing = 0           # later runs at the same revision (beat's drift checks) write nothing
        for name in names:
            entries = [e for e in store.history(name, CLUSTER) if e["revision"] == second]
            runs = Counter(e["run_id"] for e in entries)
            assert all(n == 1 for n in runs.values()), (name, "a run recorded twice", entries)
            wrote = [e for e in entries if e.get("writes")]
            assert len(wrote) <= 1, (name, "two runs wrote the same revision", entries)
            writing += len(wrote)

        for group in ("a", "b"):     # both groups took work: fetches into their own cache,
            mirrors = list((tmp_path / f"cache-{group}").glob("git/*"))     # and applies
            # push mode applies in the render's task, or in an apply task of its own
            applied = re.findall(r"Task fleetsync\.(?:apply|render)\[[^]]+\] succeeded",
                                 (tmp_path / f"group-{group}.log").read_text())
            assert mirrors and applied, f"worker group {group} took no work"
        print(f"\ncold sync of {APPS} units {cold:.1f}s; {done} units at the new commit and "
              f"{in_flight} lock/running keys when the primary died; the replica promoted "
              f"after {promoted_after:.1f}s; every unit Ready at the new commit "
              f"{converged:.1f}s later; {writing} history entries of a run that wrote it")
    finally:
        stack.stop()
        sentinels.stop()
