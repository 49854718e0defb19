"""Ownership: fleetsync never silently takes over an object it did not apply."""

from __future__ import annotations

import pytest

from shared.errors import OwnershipError
from workers.apply.engine import apply_unit
from workers.apply.kube import Kube
from workers.apply.refs import APP_LABEL
from workers.apply.testing import application, configmap, namespace, unique

pytestmark = pytest.mark.k8s


@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


@pytest.fixture()
def ns(kube) -> str:
    name = unique("own")
    kube.create("/api/v1/namespaces", namespace(name))
    return name


def by_hand(kube: Kube, ns: str, name: str, **labels: str) -> dict:
    obj = configmap(name, ns, owner="someone else")
    obj["metadata"]["labels"] = labels
    return kube.create(f"/api/v1/namespaces/{ns}/configmaps", obj)


def test_an_unowned_object_fails_the_apply_and_nothing_is_written(kube, ns):
    name = unique("app")
    taken = by_hand(kube, ns, "taken")
    before = kube.counters.snapshot()["writes"]
    with pytest.raises(OwnershipError) as caught:
        apply_unit(kube, app=application(name), objects=[configmap("new", ns),
                   configmap("taken", ns, owner="us")], revision="r1", token=1)
    assert f"ConfigMap/{ns}/taken: exists and was not applied by fleetsync" in str(caught.value)
    assert "adopt" in str(caught.value) and caught.value.reason == "OwnershipConflict"
    assert kube.counters.snapshot()["writes"] == before
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/taken") == taken
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/new") is None


def test_adopt_takes_an_unowned_object_over(kube, ns):
    name = unique("app")
    by_hand(kube, ns, "taken")
    result = apply_unit(kube, app=application(name, adopt=True),
                        objects=[configmap("taken", ns, owner="us")], revision="r1", token=1)
    (change,) = result.changeset.entries
    assert (change.action, change.reason) == ("configured", "adopted")
    assert "data.owner: changed" in change.drift             # no value leaves the cluster
    live = kube.get(f"/api/v1/namespaces/{ns}/configmaps/taken")
    assert live["metadata"]["labels"][APP_LABEL] == name and live["data"] == {"owner": "us"}
    assert result.drift_corrections == 0          # adoption is not drift correction


def test_another_applications_object_fails_even_with_adopt(kube, ns):
    first, second = unique("app"), unique("app")
    apply_unit(kube, app=application(first), objects=[configmap("shared", ns, owner=first)],
               revision="r1", token=1)
    with pytest.raises(OwnershipError) as caught:
        apply_unit(kube, app=application(second, adopt=True),
                   objects=[configmap("shared", ns, owner=second)], revision="r1", token=1)
    assert f"owned by application '{first}'" in str(caught.value)
    live = kube.get(f"/api/v1/namespaces/{ns}/configmaps/shared")
    assert live["metadata"]["labels"][APP_LABEL] == first and live["data"]["owner"] == first


def test_every_conflict_is_named_at_once(kube, ns):
    by_hand(kube, ns, "one")
    by_hand(kube, ns, "two", **{APP_LABEL: "billing"})
    with pytest.raises(OwnershipError) as caught:
        apply_unit(kube, app=application(unique("app")), objects=[configmap("one", ns),
                   configmap("two", ns)], revision="r1", token=1)
    assert "2 object(s) not owned" in str(caught.value)
    assert f"ConfigMap/{ns}/one" in str(caught.value)
    assert f"ConfigMap/{ns}/two: owned by application 'billing'" in str(caught.value)
