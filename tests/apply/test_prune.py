"""Prune: what left Git is deleted when prune is on, and nothing fleetsync did not apply."""

from __future__ import annotations

import dataclasses

import pytest

from shared.errors import ApplyError
from workers.apply.engine import apply_unit
from workers.apply.inventory import read as read_inventory
from workers.apply.kube import Kube
from workers.apply.plan import ref_of
from workers.apply.refs import APP_LABEL
from workers.apply.testing import application, configmap, namespace, unique

pytestmark = pytest.mark.k8s


@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


def cm_path(ns: str, name: str) -> str:
    return f"/api/v1/namespaces/{ns}/configmaps/{name}"


def first_apply(kube: Kube, prune: bool = True) -> tuple[str, str, list[dict]]:
    name, ns = unique("prune"), unique("prune")
    objects = [namespace(ns), configmap("keep", ns), configmap("old", ns)]
    apply_unit(kube, app=application(name, prune=prune), objects=objects, revision="r1", token=1)
    return name, ns, objects


def test_object_removed_from_git_is_deleted_and_leaves_the_inventory(kube):
    name, ns, objects = first_apply(kube)
    result = apply_unit(kube, app=application(name), objects=objects[:2], revision="r2", token=2)
    assert result.counts["pruned"] == 1
    assert result.changeset.summary()["pruned"] == [f"ConfigMap/{ns}/old"]
    assert kube.get_or_none(cm_path(ns, "old")) is None
    assert kube.get_or_none(cm_path(ns, "keep")) is not None
    assert set(read_inventory(kube, name).refs) == {ref_of(o) for o in objects[:2]}


def test_with_prune_off_it_stays_and_stays_tracked(kube):
    name, ns, objects = first_apply(kube, prune=False)
    app = application(name, prune=False)
    result = apply_unit(kube, app=app, objects=objects[:2], revision="r2", token=2)
    (skipped,) = result.changeset.by_action("skipped")
    assert skipped.reason == "prune disabled" and result.counts["pruned"] == 0
    assert kube.get_or_none(cm_path(ns, "old")) is not None
    assert ref_of(objects[2]) in read_inventory(kube, name).refs
    # turned on later, prune still knows what to delete
    later = apply_unit(kube, app=dataclasses.replace(app, prune=True), objects=objects[:2],
                       revision="r2", token=3)
    assert later.counts["pruned"] == 1 and kube.get_or_none(cm_path(ns, "old")) is None


def test_an_object_that_lost_our_label_is_never_deleted(kube, kube_clients):
    from kubernetes import client

    name, ns, objects = first_apply(kube)
    core = client.CoreV1Api(kube_clients["dev-1"])
    core.patch_namespaced_config_map("old", ns, {"metadata": {"labels": {APP_LABEL: None}}})
    result = apply_unit(kube, app=application(name), objects=objects[:2], revision="r2", token=2)
    (skipped,) = result.changeset.by_action("skipped")
    assert "left alone" in skipped.reason and result.counts["pruned"] == 0
    assert kube.get_or_none(cm_path(ns, "old")) is not None
    assert ref_of(objects[2]) not in read_inventory(kube, name).refs


def test_objects_never_in_the_inventory_are_never_deleted(kube):
    name, ns, objects = first_apply(kube)
    kube.create(f"/api/v1/namespaces/{ns}/configmaps", configmap("by-hand", ns))
    labelled = configmap("labelled-by-hand", ns)
    labelled["metadata"]["labels"] = {APP_LABEL: name}
    kube.create(f"/api/v1/namespaces/{ns}/configmaps", labelled)
    result = apply_unit(kube, app=application(name), objects=objects[:1], revision="r2", token=2)
    assert result.counts["pruned"] == 2                     # keep and old, from the inventory
    assert kube.get_or_none(cm_path(ns, "by-hand")) is not None
    assert kube.get_or_none(cm_path(ns, "labelled-by-hand")) is not None


def test_an_object_deleted_by_hand_is_simply_forgotten(kube):
    name, ns, objects = first_apply(kube)
    kube.delete(cm_path(ns, "old"))
    result = apply_unit(kube, app=application(name), objects=objects[:2], revision="r2", token=2)
    (skipped,) = result.changeset.by_action("skipped")
    assert skipped.reason == "already deleted" and result.writes == 1   # the inventory only
    assert ref_of(objects[2]) not in read_inventory(kube, name).refs


def limited_kube(kubeconfig: str, user: str) -> Kube:
    """A client acting as ``user`` (impersonated by the admin), who may not delete."""
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    api_client.set_default_header("Impersonate-User", user)
    return Kube(api_client, name="dev-1")


def grant_all_but_delete(kube: Kube, user: str) -> None:
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    kube.create(f"{rbac}/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": user},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
                  {"apiGroups": [""], "resources": ["configmaps"],
                   "verbs": ["get", "list", "create", "update", "patch"]}]})
    kube.create(f"{rbac}/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def test_a_failed_delete_keeps_the_survivor_in_the_inventory(kube, dev_fleet):
    name, ns, objects = first_apply(kube)
    user = unique("no-delete")
    grant_all_but_delete(kube, user)
    limited = limited_kube(dev_fleet.clusters["dev-1"], user)
    with pytest.raises(ApplyError) as caught:
        apply_unit(limited, app=application(name), objects=objects[:2], revision="r2", token=2)
    assert f"1 object(s) failed to prune:\n  ConfigMap/{ns}/old: " in str(caught.value)
    assert "forbidden" in str(caught.value)
    assert kube.get_or_none(cm_path(ns, "old")) is not None
    stored = read_inventory(kube, name)
    assert stored.revision == "r2"                       # the rest of the apply went through
    assert ref_of(objects[2]) in stored.refs             # and the survivor is still tracked
    later = apply_unit(kube, app=application(name), objects=objects[:2], revision="r2", token=3)
    assert later.counts["pruned"] == 1
