"""Argo CD sync waves in the apply engine, on a cluster with controllers and kwok Nodes.

An object of a later wave is not created before every object of the waves before it
is healthy: a Deployment of wave 0 whose availability takes a while
(``minReadySeconds``), a ConfigMap of wave 1 created after it turned Available (from
the objects' own timestamps). A wave that does not become healthy within the
application's ``timeout`` stops the sync, naming the wave and the objects, with the
later waves never created and what was applied recorded in the inventory.
(kwok: an image tagged ``broken`` never becomes Ready: ``devtools/kwok_stages.yaml``.)
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from workers.apply import inventory as inv
from workers.apply.engine import apply_unit
from workers.apply.waves import WaveNotHealthy
from workers.apply.testing import application, configmap, deployment, namespace, unique

pytestmark = pytest.mark.k8s

READY_AFTER = 4          # seconds a wave-0 Pod must be Ready before its Deployment is Available


@pytest.fixture(scope="module")
def kube(work_kube):
    return work_kube


def wave(obj: dict, n: int) -> dict:
    obj["metadata"].setdefault("annotations", {})["argocd.argoproj.io/sync-wave"] = str(n)
    return obj


def stamp_of(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def created(obj: dict) -> datetime:
    return stamp_of(obj["metadata"]["creationTimestamp"])


def sync_hook(name: str, ns: str, n: int) -> dict:
    return wave({"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": {"name": name, "namespace": ns,
                              "annotations": {"argocd.argoproj.io/hook": "Sync"}},
                 "spec": {"backoffLimit": 0, "template": {"spec": {
                     "restartPolicy": "Never",
                     "containers": [{"name": "run", "image": "busybox:1.36"}]}}}}, n)


def test_a_later_wave_is_created_only_once_the_wave_before_is_healthy(kube):
    ns, app = unique("waves"), application(unique("waves"), timeout=120)
    db = wave(deployment("db", ns, replicas=1), 0)
    db["spec"]["minReadySeconds"] = READY_AFTER
    objects = [namespace(ns), wave(configmap("first", ns), -1), db,
               wave(configmap("after", ns), 1), sync_hook("seed", ns, 1),
               wave(configmap("last", ns), 2)]
    result = apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    assert result.hooks == (f"Sync Job/{ns}/seed",)
    assert {r.name for r in inv.read(kube, app.name).refs} == {
        "after", "db", "first", "last", ns}

    first = kube.get(f"/api/v1/namespaces/{ns}/configmaps/first")
    dep = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/db")
    after = kube.get(f"/api/v1/namespaces/{ns}/configmaps/after")
    last = kube.get(f"/api/v1/namespaces/{ns}/configmaps/last")
    seed = kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/seed")
    (available,) = [c for c in dep["status"]["conditions"] if c["type"] == "Available"]
    assert available["status"] == "True"
    healthy_at = stamp_of(available["lastTransitionTime"])
    # wave 0 was healthy when wave 1 was created: Available (which took minReadySeconds
    # after its Pod was Ready) before the ConfigMap and the Sync hook of wave 1 existed
    assert created(first) <= created(dep)
    assert healthy_at >= created(dep) + timedelta(seconds=READY_AFTER - 1)
    assert healthy_at <= created(after) and healthy_at <= created(seed)
    seed_done = [stamp_of(c["lastTransitionTime"]) for c in seed["status"]["conditions"]
                 if c["type"] in ("SuccessCriteriaMet", "Complete") and c["status"] == "True"]
    assert seed_done and min(seed_done) <= created(last)          # wave 1 done first

    again = apply_unit(kube, app=app, objects=objects, revision="r1", token=2)
    assert again.writes == 0 and again.hooks == ()         # a no-op pass waits for nothing


def test_a_wave_not_healthy_in_time_stops_the_sync_naming_the_wave_and_objects(kube):
    ns, app = unique("wavefail"), application(unique("waves"), timeout=8)
    objects = [namespace(ns), wave(deployment("db", ns, replicas=1, image="postgres:broken"), 0),
               configmap("plain", ns), wave(configmap("after", ns), 1)]
    with pytest.raises(WaveNotHealthy) as err:
        apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    message = err.value.message
    assert message.startswith("sync wave 0 not healthy within the timeout of 8s; later waves "
                              "not applied:")
    assert f"Deployment/{ns}/db: Progressing" in message and "plain" not in message
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/after") is None
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/plain")      # wave 0 was applied
    assert {r.name for r in inv.read(kube, app.name).refs} == {"db", ns, "plain"}
