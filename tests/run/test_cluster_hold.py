"""A cluster opts out locally: the ConfigMap fleetsync-system/fleetsync-hold holds exactly it.

Real workers and beat, two real control planes, push mode and pull mode. Someone
with access to ``dev-1`` only creates the ConfigMap: a commit reaches ``dev-2`` and
not ``dev-1``, whose unit stays Ready at what it has and says who holds it; deleting
the ConfigMap lifts the hold and the commit lands. Each hold seen and lifted is one
audit line.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

NS, NAME = "fleetsync-system", "fleetsync-hold"


def put_hold(kube_client, data: dict[str, str]) -> None:
    from kubernetes import client

    core = client.CoreV1Api(kube_client)
    try:
        core.create_namespace({"metadata": {"name": NS}})
    except client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise
    core.create_namespaced_config_map(NS, {"metadata": {"name": NAME}, "data": data})


def lift_hold(kube_client) -> None:
    from kubernetes import client

    client.CoreV1Api(kube_client).delete_namespaced_config_map(NAME, NS)


def audits(log: Path, what: str) -> list[dict]:
    lines = [json.loads(x) for x in log.read_text().splitlines() if '"audit"' in x]
    return [a for a in lines if a.get("event") == "audit" and a.get("what") == what]


def story(stack: Stack, kube_clients, log: Path) -> None:
    first = stack.repo.head()
    stack.wait("Ready on both", lambda: all(stack.ready_at(c, first) for c in ("dev-1", "dev-2")),
               timeout=120)
    until = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)
    put_hold(kube_clients["dev-1"], {"by": "tech-anna", "reason": "site visit\x1b[2J",
                                     "until": until.isoformat()})
    stack.wait("dev-1 held on the cluster",
               lambda: stack.status("dev-1")["held_by"] == "configmap/fleetsync-hold",
               timeout=60)
    new = stack.commit("two", value="two")
    stack.wait("dev-2 Ready at the commit", lambda: stack.ready_at("dev-2", new), timeout=90)
    stack.wait("dev-1 names the commit waiting",
               lambda: stack.status("dev-1")["held_revision"] == new, timeout=60)
    status = stack.status("dev-1")
    assert status["phase"] == "Ready" and status["revision"] == first
    assert (f"held on the cluster by tech-anna until {until:%a %H:%M} UTC (site visit [2J)"
            in status["message"]), status["message"]
    assert f"new revision waiting: {new[:7]}" in status["message"]   # counted where the mirror is
    assert status["held_until"] == until.isoformat().replace("+00:00", "Z")
    assert stack.status("dev-2")["held_by"] == ""
    seen = audits(log, "cluster hold seen")
    assert len(seen) == 1 and seen[0]["who"] == "tech-anna" and seen[0]["units"] == ["dev-1/*"]

    lift_hold(kube_clients["dev-1"])
    stack.wait("the commit lands on dev-1 once the hold is lifted",
               lambda: stack.ready_at("dev-1", new), timeout=90)
    assert stack.status("dev-1")["held_by"] == ""
    stack.wait("the lifting audited", lambda: len(audits(log, "cluster hold lifted")) == 1,
               timeout=30)


def test_the_hold_configmap_holds_exactly_its_cluster(dev_fleet, redis_url, kube_clients,
                                                      tmp_path):
    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters)
    stack.write_spec(["dev-1", "dev-2"])
    try:
        stack.start_worker("w1")
        stack.start_beat()
        story(stack, kube_clients, tmp_path / "w1.log")
    finally:
        stack.stop()
        _clean(kube_clients["dev-1"])


def test_in_pull_mode_the_clusters_own_worker_reads_the_hold(dev_fleet, redis_url,
                                                            kube_clients, tmp_path):
    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters,
                  env_extra={"FLEETSYNC_QUEUE_PER_CLUSTER": "true"})
    stack.write_spec(["dev-1", "dev-2"])
    try:
        stack.start_worker("central", "--queues", "reconcile,fetch,render")
        stack.start_worker("inside-dev-1", "--cluster", "dev-1")
        stack.start_worker("inside-dev-2", "--cluster", "dev-2")
        stack.start_beat()
        story(stack, kube_clients, tmp_path / "inside-dev-1.log")
    finally:
        stack.stop()
        _clean(kube_clients["dev-1"])


def _clean(kube_client) -> None:
    try:
        lift_hold(kube_client)
    except Exception:
        pass
