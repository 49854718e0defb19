"""The plan, drift and ordering: pure decisions, tested without a cluster or a mock."""

from __future__ import annotations

import copy

import pytest

from workers.apply.diff import format_diff
from workers.apply.drift import drift, parse_quantity
from workers.apply.plan import ObjectRef, ownership_error, plan, ref_of, stamp
from workers.apply.refs import APP_LABEL, apply_order, prune_order, tiers
from workers.apply.testing import configmap, crd, deployment, namespace, service

APP = "shop"


def live_of(obj: dict, owner: str | None = APP, **changes) -> dict:
    """What the server would return for ``obj``: defaults added, metadata filled in."""
    live = copy.deepcopy(obj)
    meta = live["metadata"]
    meta.update(uid="u-1", resourceVersion="7", creationTimestamp="2025-01-01T00:00:00Z",
                managedFields=[{"manager": "fleetsync"}])
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != APP_LABEL}
    if owner:
        labels[APP_LABEL] = owner
    meta["labels"] = labels
    live.update(changes)
    return live


def refs(*objs: dict) -> list[ObjectRef]:
    return [ref_of(o) for o in objs]


def test_ref_id_and_str_round_trip():
    ref = ObjectRef("apps/v1", "Deployment", "web", "web-app")
    assert ref.id == "apps/v1/Deployment/web/web-app"
    assert str(ref) == "Deployment/web/web-app"
    assert ObjectRef.parse(ref.id) == ref
    cluster = ObjectRef("rbac.authorization.k8s.io/v1", "ClusterRole", "", "admin")
    assert str(cluster) == "ClusterRole/admin"
    assert ObjectRef.parse(cluster.id) == cluster


def test_stamp_adds_only_the_ownership_label_and_copies():
    obj = configmap("c", "web", a="1")
    obj["metadata"]["labels"] = {"team": "x"}
    stamped = stamp(obj, APP)
    assert stamped["metadata"]["labels"] == {"team": "x", APP_LABEL: APP}
    assert obj["metadata"]["labels"] == {"team": "x"}
    assert "annotations" not in stamped["metadata"]      # no revision, no timestamp


def test_absent_object_is_created():
    want = stamp(configmap("c", "web", a="1"), APP)
    changes = plan([want], {ref_of(want): None}, [], app=APP, prune=True, adopt=False)
    assert [(c.action, str(c.ref)) for c in changes.entries] == [("created", "ConfigMap/web/c")]
    assert changes.has_writes()


def test_identical_live_object_is_unchanged_despite_server_fields():
    want = stamp(deployment("web", "web"), APP)
    live = live_of(want, status={"replicas": 0})
    live["spec"]["template"]["spec"]["containers"][0].update(
        imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "500m"
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    changes = plan([want], {ref_of(want): live}, refs(want), app=APP, prune=True, adopt=False)
    assert changes.counts()["unchanged"] == 1
    assert not changes.has_writes()
    assert format_diff(changes) == ""


def test_drifted_field_is_configured_with_its_path():
    want = stamp(deployment("web", "web", replicas=3), APP)
    live = live_of(want)
    live["spec"]["replicas"] = 5
    (change,) = plan([want], {ref_of(want): live}, refs(want), app=APP, prune=True,
                     adopt=False).entries
    assert change.action == "configured" and change.reason == "drifted from Git"
    assert change.drift == ("spec.replicas: 5 -> 3",)


def test_drift_in_a_named_list_item_names_the_item():
    want = stamp(deployment("web", "web", image="nginx:2"), APP)
    live = live_of(deployment("web", "web", image="nginx:1"))
    assert drift(want, live, values=True) == [
        "spec.template.spec.containers[web].image: nginx:1 -> nginx:2"]


def test_drift_by_index_and_missing_fields():
    want = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80}, {"port": 443}], "type": "ClusterIP"}}
    live = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 81, "protocol": "TCP"}]}}
    assert drift(want, live, values=True) == ["spec.ports[0].port: 81 -> 80",
                                 'spec.ports[1]: <absent> -> {"port": 443}',
                                 "spec.type: <absent> -> ClusterIP"]


def test_scalar_lists_compare_whole_and_extra_map_items_are_drift():
    want = {"kind": "X", "spec": {"args": ["a", "b"], "rules": [{"x": 1}]}}
    live = {"kind": "X", "spec": {"args": ["a"], "rules": [{"x": 1}, {"x": 2}]}}
    assert drift(want, live, values=True) == ['spec.args: ["a"] -> ["a", "b"]',
                                 "spec.rules: 2 items -> 1 items"]


def test_quantities_compare_by_value_only_in_resource_maps():
    assert parse_quantity("500m") == parse_quantity(0.5)
    assert parse_quantity("1Gi") == 1024 ** 3
    assert parse_quantity("nginx") is None
    want = {"kind": "X", "spec": {"resources": {"requests": {"cpu": 1, "memory": "1Gi"}},
                                  "data": {"v": "1"}}}
    live = {"kind": "X", "spec": {"resources": {"requests": {"cpu": "1", "memory": "1024Mi"}},
                                  "data": {"v": 1}}}
    assert drift(want, live, values=True) == ['spec.data.v: 1 -> "1"']


def test_null_and_empty_desired_fields_and_server_metadata_are_not_drift():
    want = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "creationTimestamp": None, "annotations": {}},
            "data": {}, "status": {"phase": "x"}}
    live = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "creationTimestamp": "2025-01-01T00:00:00Z"}}
    assert drift(want, live, values=True) == []


def test_secret_string_data_compares_as_data_and_values_are_never_shown():
    want = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"password": "hunter2"}}
    same = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"password": "aHVudGVyMg=="}}
    other = {**same, "data": {"password": "b3RoZXI="}}
    assert drift(want, same) == []
    assert drift(want, other, values=True) == ["data.password: (secret value changed)"]


def test_unlabelled_live_object_is_a_conflict_unless_adopted():
    want = stamp(configmap("c", "web", a="1"), APP)
    live = live_of(configmap("c", "web", a="1"), owner=None)
    refused = plan([want], {ref_of(want): live}, [], app=APP, prune=True, adopt=False)
    (change,) = refused.entries
    assert change.action == "skipped" and change.conflict
    error = ownership_error(refused, app=APP)
    assert error is not None and "ConfigMap/web/c" in str(error)
    assert "adopt" in str(error)

    adopted = plan([want], {ref_of(want): live}, [], app=APP, prune=True, adopt=True,
                   values=True)
    (change,) = adopted.entries
    assert (change.action, change.reason) == ("configured", "adopted")
    assert change.drift == (f"metadata.labels.{APP_LABEL}: <absent> -> {APP}",)
    assert ownership_error(adopted, app=APP) is None


def test_object_of_another_application_is_a_conflict_even_with_adopt():
    want = stamp(configmap("c", "web"), APP)
    live = live_of(configmap("c", "web"), owner="billing")
    changes = plan([want], {ref_of(want): live}, [], app=APP, prune=True, adopt=True,
                   values=True)
    (change,) = changes.entries
    assert change.conflict and "billing" in change.reason
    assert "billing" in str(ownership_error(changes, app=APP))


def test_object_gone_from_git_is_pruned_only_when_prune_is_on():
    keep, old = stamp(configmap("keep", "web"), APP), stamp(configmap("old", "web"), APP)
    live = {ref_of(keep): live_of(keep), ref_of(old): live_of(old)}
    on = plan([keep], live, refs(keep, old), app=APP, prune=True, adopt=False)
    assert [(c.action, str(c.ref)) for c in on.to_prune()] == [("pruned", "ConfigMap/web/old")]
    assert on.kept == ()
    off = plan([keep], live, refs(keep, old), app=APP, prune=False, adopt=False)
    assert off.get(ref_of(old)).action == "skipped"
    assert off.get(ref_of(old)).reason == "prune disabled"
    assert off.kept == (ref_of(old),)        # still tracked: pruned once prune is turned on
    assert not off.has_writes()


def test_prune_never_touches_objects_without_our_label():
    old = configmap("old", "web")
    for owner in (None, "billing"):
        live = {ref_of(old): live_of(old, owner=owner)}
        (change,) = plan([], live, refs(old), app=APP, prune=True, adopt=True).entries
        assert change.action == "skipped" and not change.conflict
        assert "left alone" in change.reason


def test_inventory_object_already_deleted_is_skipped():
    old = configmap("old", "web")
    (change,) = plan([], {ref_of(old): None}, refs(old), app=APP, prune=True,
                     adopt=False).entries
    assert (change.action, change.reason) == ("skipped", "already deleted")


def test_apply_order_puts_namespaces_then_crds_then_cluster_scoped_then_namespaced():
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "r"}}
    objs = [deployment("d", "web"), service("s", "web"), configmap("c", "web"), role,
            crd("example.com", "Widget", "widgets"), namespace("web")]
    ordered = [r.kind for r in apply_order(refs(*objs))]
    assert ordered == ["Namespace", "CustomResourceDefinition", "ClusterRole", "ConfigMap",
                       "Service", "Deployment"]
    assert [r.kind for r in prune_order(refs(*objs))] == list(reversed(ordered))
    assert [[r.kind for r in tier] for tier in tiers(refs(*objs))] == [
        ["Namespace"], ["CustomResourceDefinition"], ["ClusterRole"],
        ["ConfigMap", "Service", "Deployment"]]


def test_plan_entries_come_in_apply_order_then_prunes():
    ns, cm = stamp(namespace("web"), APP), stamp(configmap("c", "web"), APP)
    old = stamp(configmap("old", "web"), APP)
    changes = plan([cm, ns], {ref_of(cm): None, ref_of(ns): None, ref_of(old): live_of(old)},
                   refs(old), app=APP, prune=True, adopt=False)
    assert [c.action for c in changes.entries] == ["created", "created", "pruned"]
    assert [c.ref.kind for c in changes.entries][:2] == ["Namespace", "ConfigMap"]
    assert changes.summary() == {"created": ["Namespace/web", "ConfigMap/web/c"],
                                 "pruned": ["ConfigMap/web/old"]}


def test_format_diff_shows_every_kind_of_change():
    new, cur, old = (stamp(configmap(n, "web", v="2"), APP) for n in ("new", "cur", "old"))
    live_cur = live_of(cur, data={"v": "1"})
    changes = plan([new, cur], {ref_of(new): None, ref_of(cur): live_cur,
                                ref_of(old): live_of(old)},
                   refs(cur, old), app=APP, prune=True, adopt=False, values=True)
    assert format_diff(changes).splitlines() == [
        "~ ConfigMap/web/cur", "    data.v: 1 -> 2", "+ ConfigMap/web/new",
        "- ConfigMap/web/old (prune)"]


@pytest.mark.parametrize("prune", [True, False])
def test_counts_cover_every_action(prune):
    changes = plan([], {}, [], app=APP, prune=prune, adopt=False)
    assert changes.counts() == dict.fromkeys(
        ["created", "configured", "replaced", "unchanged", "pruned", "skipped"], 0)


def test_without_values_only_harmless_values_are_shown():
    want = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"replicas": 3, "paused": False, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.27", "env": [
                    {"name": "DB_PASSWORD", "value": "s3cret-in-git"}]}]}}}}
    live = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"replicas": 5, "paused": True, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.25", "env": [
                    {"name": "DB_PASSWORD", "value": "changed-by-hand"}]}]}}}}
    lines = drift(want, live)
    assert lines == [
        "spec.replicas: 5 -> 3", "spec.paused: true -> false",
        "spec.template.spec.containers[web].image: nginx:1.25 -> nginx:1.27",
        "spec.template.spec.containers[web].env[DB_PASSWORD].value: changed"]
    assert "s3cret" not in " ".join(lines) and "by-hand" not in " ".join(lines)


def test_a_drifted_field_names_who_changed_it_and_when():
    from workers.apply.attribution import changed_by, steps

    assert steps("spec.template.spec.containers[web].env[DB].value") == [
        ("f", "spec"), ("f", "template"), ("f", "spec"), ("f", "containers"), ("k", "web"),
        ("f", "env"), ("k", "DB"), ("f", "value")]
    managed = [
        {"manager": "fleetsync", "operation": "Apply", "time": "2026-11-26T10:00:00Z",
         "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
             'k:{"name":"web"}': {".": {}, "f:image": {}}}}}}}},
        {"manager": "kubectl-scale", "operation": "Update", "time": "2026-11-26T10:42:07Z",
         "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        {"manager": "kubectl-edit", "operation": "Update", "time": "2026-11-26T10:50:00Z",
         "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
             'k:{"name":"web"}': {"f:image": {}}}}}}}}]
    assert changed_by(managed, "spec.replicas") == "by kubectl-scale at 10:42:07"
    assert changed_by(managed, "spec.template.spec.containers[web].image") == \
        "by kubectl-edit at 10:50:00"
    assert changed_by(managed, "spec.paused") == ""
    want = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"replicas": 3}}
    live = {**want, "metadata": {"name": "w", "managedFields": managed}, "spec": {"replicas": 5}}
    assert drift(want, live) == ["spec.replicas: 5 -> 3 (by kubectl-scale at 10:42:07)"]
