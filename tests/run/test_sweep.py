"""The no-op pass of a cluster, in bulk: units in sync get no run, and nothing is written.

A real worker and beat keep five applications on a bare control plane (objects that
are healthy without controllers: ConfigMaps, Services, Roles; a Deployment is not
Ready before its controller has observed it).
Once they are Ready, ticks go on: every unit's status is refreshed, yet no object's
resourceVersion moves and no history entry is added (no run happened). A hand edit,
a deleted object and a changed render each still get a run of their own, for that
unit only. The compare-and-set that refreshes a quiet unit's status holds only while
no run is queued, parked or running and the status is the one the pass read.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from shared.state import keys
from shared.state.quiet import QuietUnits
from shared.state.status import StatusStore, UnitStatus
from tests.conftest import new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
APPS = 5


def app_objects(name: str, namespace: str, value: str = "one") -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
         "data": {"value": value}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
    ]


class Fleet:
    """``APPS`` applications, one namespace, on dev-1, kept by a worker and beat."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.names = [f"{stack.app}-{i}" for i in range(APPS)]
        self.namespace = stack.namespace

    def write(self, changed: str = "") -> str:
        repo = self.stack.repo
        repo.write("ns/namespace.yaml", json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": self.namespace}}))
        for name in self.names:
            objects = app_objects(name, self.namespace, "two" if name == changed else "one")
            repo.write(f"apps/{name}/all.yaml", "\n---\n".join(json.dumps(o) for o in objects))
        sha = repo.commit(f"apps {changed}")
        repo.push()
        return sha

    def spec(self) -> None:
        s = self.stack
        lines = ["sources:", "  - name: git", f"    url: {s.repo.bare_url()}",
                 "    branch: main", "    interval: 2s", "clusters:",
                 "  - name: dev-1", f"    kubeconfig: {s.kubeconfigs['dev-1']}",
                 "    interval: 2s", "applications:",
                 f"  - name: {s.app}-ns", "    source: git", "    path: ns",
                 "    clusters: {names: [dev-1]}"]
        for name in self.names:
            lines += [f"  - name: {name}", "    source: git", f"    path: apps/{name}",
                      "    clusters: {names: [dev-1]}", f"    dependsOn: [{s.app}-ns]"]
        s.spec.write_text("\n".join(lines) + "\n")

    def statuses(self) -> dict[str, UnitStatus]:
        return {n: self.stack.store.get_status(n, "dev-1") for n in self.names}

    def history(self, name: str) -> list[dict]:
        return self.stack.store.history(name, "dev-1")

    def all_ready_at(self, revision: str) -> bool:
        return all(s.phase == "Ready" and s.revision == revision
                   for s in self.statuses().values())


@pytest.fixture(scope="module")
def fleet(dev_fleet, redis_url, tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("sweep"), new_redis_db(redis_url), dev_fleet.clusters)
    f = Fleet(stack)
    revision = f.write()
    f.spec()
    stack.start_worker("w1")
    stack.start_beat()
    stack.wait("every unit Ready", lambda: f.all_ready_at(revision), timeout=120)
    yield f
    stack.stop()


def resource_versions(kube_clients, namespace: str) -> dict[str, str]:
    """kind/name -> resourceVersion of every object of the namespace the test reads, and
    of the inventories."""
    from kubernetes import client

    core, rbac = client.CoreV1Api(kube_clients["dev-1"]), \
        client.RbacAuthorizationV1Api(kube_clients["dev-1"])
    out = {}
    for kind, items in (("ConfigMap", core.list_namespaced_config_map(namespace).items),
                        ("Service", core.list_namespaced_service(namespace).items),
                        ("Role", rbac.list_namespaced_role(namespace).items)):
        out.update({f"{kind}/{o.metadata.name}": o.metadata.resource_version for o in items})
    for o in core.list_namespaced_config_map("fleetsync-system").items:
        out[f"inventory/{o.metadata.name}"] = o.metadata.resource_version
    return out


def synced_since(fleet: Fleet, since: float) -> bool:
    return all(s.phase == "Ready" and _ts(s.last_synced_at) > since and _ts(s.last_success_at) > since
               for s in fleet.statuses().values())


def _ts(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0


def test_ticks_with_nothing_changed_refresh_status_and_write_nothing(fleet, kube_clients):
    since = time.time()                      # a tick after the first sync's runs ended
    fleet.stack.wait("every unit synced again", lambda: synced_since(fleet, since), timeout=60)
    before = resource_versions(kube_clients, fleet.namespace)
    entries = {n: len(fleet.history(n)) for n in fleet.names}
    for _ in range(2):                       # two ticks, each of them quiet
        since = time.time()
        fleet.stack.wait("every unit synced again", lambda: synced_since(fleet, since),
                         timeout=60)
    assert resource_versions(kube_clients, fleet.namespace) == before
    assert {n: len(fleet.history(n)) for n in fleet.names} == entries
    assert {s.message for s in fleet.statuses().values()} == {"3 unchanged"}
    log = (fleet.stack.tmp / "w1.log").read_text()
    assert '"event": "cluster pass"' in log and f'"quiet": {APPS + 1}' in log


def test_a_hand_edit_gets_a_run_of_that_unit_only(fleet, kube_clients):
    from kubernetes import client

    core = client.CoreV1Api(kube_clients["dev-1"])
    edited, others = fleet.names[1], [n for n in fleet.names if n != fleet.names[1]]
    entries = {n: len(fleet.history(n)) for n in others}
    core.patch_namespaced_config_map(edited, fleet.namespace, {"data": {"value": "by hand"}})

    def corrected() -> bool:
        return core.read_namespaced_config_map(edited, fleet.namespace).data["value"] == "one"
    fleet.stack.wait("the hand edit corrected", corrected, timeout=60)
    fleet.stack.wait("its history entry", lambda: any(
        e.get("drift") for e in fleet.history(edited)), timeout=30)
    since = time.time()
    fleet.stack.wait("every unit synced again", lambda: synced_since(fleet, since), timeout=60)
    assert {n: len(fleet.history(n)) for n in others} == entries


def test_a_deleted_object_is_made_again(fleet, kube_clients):
    from kubernetes import client

    rbac = client.RbacAuthorizationV1Api(kube_clients["dev-1"])
    name = fleet.names[2]
    rbac.delete_namespaced_role(name, fleet.namespace)

    def back() -> bool:
        found = rbac.list_namespaced_role(fleet.namespace,
                                          field_selector=f"metadata.name={name}").items
        return bool(found) and found[0].metadata.deletion_timestamp is None
    fleet.stack.wait("the Role made again", back, timeout=60)


def test_a_changed_render_gets_a_run(fleet, kube_clients):
    from kubernetes import client

    core = client.CoreV1Api(kube_clients["dev-1"])
    changed = fleet.names[3]
    revision = fleet.write(changed=changed)
    fleet.stack.wait("every unit Ready at the new revision", lambda: fleet.all_ready_at(revision),
                     timeout=90)
    assert core.read_namespaced_config_map(changed, fleet.namespace).data["value"] == "two"


def test_the_refresh_holds_only_while_no_run_began(redis_url):
    client = redis.Redis.from_url(new_redis_db(redis_url), decode_responses=True)
    quiet_units, store = QuietUnits(client), StatusStore(client)
    status = UnitStatus("web", "c1", phase="Ready", revision="abc", message="1 configured", last_synced_at="2026-01-01T00:00:00Z",
                        run_id="r1", last_success_at="2026-01-01T00:00:00Z")
    store.set_status(status)
    now, quiet = "2026-01-02T00:00:00Z", (status, "1 unchanged", {"unchanged": 1})
    assert quiet_units.refresh([quiet], now) == [True]
    refreshed = store.get_status("web", "c1")
    assert (refreshed.last_synced_at, refreshed.message, refreshed.counts) == (
        now, "1 unchanged", {"unchanged": 1})
    client.set(keys.queued(keys.unit_id("web", "c1")), "r2")          # a run was requested
    assert quiet_units.refresh([quiet], "2026-01-03T00:00:00Z") == [False]
    client.delete(keys.queued(keys.unit_id("web", "c1")))
    store.set_status(UnitStatus("web", "c1", phase="Ready", revision="abc", message="", last_synced_at=now, run_id="r2"))
    assert quiet_units.refresh([quiet], "2026-01-03T00:00:00Z") == [False]   # a newer run's
    assert store.get_status("web", "c1").last_synced_at == now
