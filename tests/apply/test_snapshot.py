"""The cluster snapshot's pure parts: which LIST selector it asks with, and what it can
tell of a unit (anything it cannot is ``Unobserved``: the unit then gets a run)."""

from __future__ import annotations

import pytest

from workers.apply.inventory import Inventory
from workers.apply.refs import APP_LABEL, ObjectRef
from workers.apply.snapshot import SELECTOR_MAX, Snapshot, Unobserved, selector

CM = ObjectRef("v1", "ConfigMap", "web", "settings")


def test_a_few_applications_are_named_in_the_selector_and_many_are_not():
    assert selector(APP_LABEL, ["web", "api", "web"]) == f"{APP_LABEL} in (api,web)"
    assert selector(APP_LABEL, []) == APP_LABEL
    many = [f"application-{i:04d}" for i in range(SELECTOR_MAX // 10)]
    assert selector(APP_LABEL, many) == APP_LABEL


def labelled(app: str) -> dict:
    return {"metadata": {"name": CM.name, "namespace": CM.namespace,
                         "labels": {APP_LABEL: app}}}


def test_the_snapshot_tells_only_objects_of_kinds_listed_and_labelled_for_the_unit():
    snapshot = Snapshot(objects={CM: labelled("web")}, kinds={("v1", "ConfigMap")},
                        failed={("v1", "Secret"): "forbidden"},
                        inventories={"web": Inventory((CM,), "abc", 3)})
    assert snapshot.live(CM, "web")["metadata"]["name"] == "settings"
    assert snapshot.inventory("web").revision == "abc"
    assert snapshot.inventory("other") == Inventory()
    with pytest.raises(Unobserved, match="labelled for another"):
        snapshot.live(CM, "other")
    with pytest.raises(Unobserved, match="no ownership label"):
        snapshot.live(ObjectRef("v1", "ConfigMap", "web", "gone"), "web")
    with pytest.raises(Unobserved, match="forbidden"):
        snapshot.live(ObjectRef("v1", "Secret", "web", "token"), "web")
