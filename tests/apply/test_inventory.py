"""The in-cluster inventory: round trip, no-op skip, fencing token, compare-and-swap."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shared.errors import StaleInventory
from workers.apply import inventory
from workers.apply.inventory import Inventory, from_configmap, to_configmap
from workers.apply.kube import Kube
from workers.apply.refs import ObjectRef
from workers.apply.testing import unique

A = ObjectRef("apps/v1", "Deployment", "web", "web-app")
B = ObjectRef("v1", "Namespace", "", "web")


# --- pure --------------------------------------------------------------------

def test_configmap_round_trip():
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    body = to_configmap("shop", [A, B], "abc", 42, "9", when, adopted=[A])
    assert body["metadata"]["name"] == "fleetsync-shop"
    assert body["metadata"]["namespace"] == "fleetsync-system"
    assert body["data"] == {"revision": "abc", "token": "42", "applied_at": "2025-01-02T03:04:05Z",
                            "objects": '["apps/v1/Deployment/web/web-app", "v1/Namespace//web"]',
                            "adopted": '["apps/v1/Deployment/web/web-app"]'}
    assert from_configmap(body) == Inventory((A, B), "abc", 42, "9", (A,))


def test_a_damaged_configmap_reads_as_empty_not_as_a_crash():
    damaged = {"metadata": {"resourceVersion": "3"}, "data": {"objects": "{", "token": "x"}}
    assert from_configmap(damaged) == Inventory((), "", 0, "3")


# --- against a real API server --------------------------------------------------

@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


@pytest.mark.k8s
def test_first_write_creates_then_reads_back(kube):
    app = unique("inv")
    assert inventory.read(kube, app) == Inventory()
    stored = inventory.write(kube, app, [A, B], token=5, revision="r1", previous=Inventory())
    assert stored.resource_version and stored.token == 5
    assert inventory.read(kube, app) == stored


@pytest.mark.k8s
def test_unchanged_inventory_is_not_written(kube):
    app = unique("inv")
    stored = inventory.write(kube, app, [A], token=1, revision="r1", previous=Inventory())
    writes = kube.counters.snapshot()["writes"]
    again = inventory.write(kube, app, [A], token=2, revision="r1", previous=stored)
    assert again is stored and kube.counters.snapshot()["writes"] == writes


@pytest.mark.k8s
def test_a_lower_fencing_token_is_refused(kube):
    app = unique("inv")
    newer = inventory.write(kube, app, [A], token=10, revision="r2", previous=Inventory())
    with pytest.raises(StaleInventory, match="token 10, newer than ours"):
        inventory.write(kube, app, [A, B], token=9, revision="r1", previous=newer)
    assert inventory.read(kube, app) == newer


@pytest.mark.k8s
def test_a_concurrent_write_is_detected_by_resource_version(kube):
    app = unique("inv")
    base = inventory.write(kube, app, [A], token=1, revision="r1", previous=Inventory())
    # two workers read the same inventory; the first to write wins
    winner = inventory.write(kube, app, [A, B], token=2, revision="r2", previous=base)
    with pytest.raises(StaleInventory, match="changed since it was read"):
        inventory.write(kube, app, [B], token=3, revision="r3", previous=base)
    assert inventory.read(kube, app) == winner


@pytest.mark.k8s
def test_two_first_writers_cannot_both_create(kube):
    app = unique("inv")
    inventory.write(kube, app, [A], token=1, revision="r1", previous=Inventory())
    with pytest.raises(StaleInventory):
        inventory.write(kube, app, [B], token=2, revision="r1", previous=Inventory())


@pytest.mark.k8s
def test_a_worker_with_an_older_token_writes_no_object_at_all(kube):
    from workers.apply.engine import apply_unit
    from workers.apply.testing import application, configmap

    app = unique("inv")
    apply_unit(kube, app=application(app), objects=[configmap(app, "default", v="1")],
               revision="r1", token=100)
    writes = kube.counters.snapshot()["writes"]
    with pytest.raises(StaleInventory):
        apply_unit(kube, app=application(app), objects=[configmap(app, "default", v="2")],
                   revision="r2", token=99)
    assert kube.counters.snapshot()["writes"] == writes
    assert kube.get(f"/api/v1/namespaces/default/configmaps/{app}")["data"] == {"v": "1"}


@pytest.mark.k8s
def test_an_inventory_fleetsync_did_not_write_is_refused(kube_clients):
    from shared.errors import ApplyError
    from workers.apply import inventory as inv
    from workers.apply.kube import Kube
    from workers.apply.testing import unique

    kube = Kube(kube_clients["dev-1"], name="dev-1")
    app = unique("app")
    inv.write(kube, "warm-up-" + app, [], token=1, revision="r", previous=inv.Inventory())
    kube.create(inv.CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": inv.name_for(app), "namespace": inv.NAMESPACE},
        "data": {"token": "99999999999", "objects": '["v1/Namespace//kube-system"]'}})
    with pytest.raises(ApplyError, match=f"is not the inventory of {app}"):
        inv.read(kube, app)
