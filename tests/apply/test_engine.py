"""The engine end to end against a real API server: create, no-op, change, drift."""

from __future__ import annotations

import pytest

from shared.errors import ApplyError, OwnershipError

from workers.apply.diff import diff_unit, format_diff
from workers.apply.engine import apply_unit
from workers.apply.inventory import read as read_inventory
from workers.apply.kube import Kube
from workers.apply.plan import ref_of
from workers.apply.refs import APP_LABEL
from workers.apply.testing import application, configmap, namespace, unique, web_app

pytestmark = pytest.mark.k8s


@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


@pytest.fixture()
def unit(kube):
    """A fresh app in a fresh namespace: its name, namespace and objects."""
    name, ns = unique("web"), unique("engine")
    return name, ns, [namespace(ns), *web_app(name, ns), configmap("settings", ns, mode="a")]


def resource_versions(kube: Kube, ns: str) -> dict[str, str]:
    out = {}
    for path in (f"/apis/apps/v1/namespaces/{ns}/deployments", f"/api/v1/namespaces/{ns}/services",
                 f"/api/v1/namespaces/{ns}/serviceaccounts", f"/api/v1/namespaces/{ns}/configmaps",
                 f"/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses"):
        for item in kube.list_items(path):
            out[f"{path.rsplit('/', 1)[1]}/{item['metadata']['name']}"] = \
                item["metadata"]["resourceVersion"]
    return out


def test_first_apply_creates_everything_labelled_and_records_the_inventory(kube, unit):
    name, ns, objects = unit
    result = apply_unit(kube, app=application(name), objects=objects, revision="rev-1", token=1)
    assert result.counts == {"created": 6, "configured": 0, "replaced": 0, "unchanged": 0,
                             "pruned": 0, "skipped": 0}
    assert result.dry_runs == 6 and result.writes >= 6
    for path in (f"/apis/apps/v1/namespaces/{ns}/deployments/{name}",
                 f"/api/v1/namespaces/{ns}/configmaps/settings", f"/api/v1/namespaces/{ns}"):
        assert kube.get(path)["metadata"]["labels"][APP_LABEL] == name
    stored = read_inventory(kube, name)
    assert stored.revision == "rev-1" and stored.token == 1
    assert set(stored.refs) == {ref_of(o) for o in objects}
    summary = result.to_dict()
    assert summary["counts"]["created"] == 6 and summary["inventory_written"] is True
    assert len(str(summary)) < 2000


def test_second_apply_of_the_same_revision_writes_nothing(kube, unit):
    name, ns, objects = unit
    apply_unit(kube, app=application(name), objects=objects, revision="rev-1", token=1)
    before = resource_versions(kube, ns)
    again = apply_unit(kube, app=application(name), objects=objects, revision="rev-1", token=2)
    assert again.writes == 0 and again.dry_runs == 0
    assert again.counts["unchanged"] == 6
    assert again.requests <= len(objects) + 1           # one GET per object + the inventory
    assert resource_versions(kube, ns) == before
    assert read_inventory(kube, name).token == 1        # not even the inventory was rewritten
    assert format_diff(diff_unit(kube, application(name), objects)) == ""


def test_a_changed_object_is_configured_and_only_it_is_written(kube, unit):
    name, ns, objects = unit
    apply_unit(kube, app=application(name), objects=objects, revision="rev-1", token=1)
    before = resource_versions(kube, ns)
    changed = [o if o["kind"] != "ConfigMap" else configmap("settings", ns, mode="b")
               for o in objects]
    result = apply_unit(kube, app=application(name), objects=changed, revision="rev-2", token=2)
    assert result.counts["configured"] == 1 and result.counts["unchanged"] == 5
    (change,) = result.changeset.by_action("configured")
    assert change.drift == ("data.mode: changed",)          # no value leaves the cluster
    after = resource_versions(kube, ns)
    assert {k for k in after if after[k] != before[k]} == {"configmaps/settings"}
    assert read_inventory(kube, name).revision == "rev-2"
    # apply (1) + inventory replace (1); the dry-run is not a write
    assert result.writes == 2 and result.dry_runs == 1


def test_a_new_revision_with_identical_objects_only_moves_the_inventory(kube, unit):
    name, ns, objects = unit
    apply_unit(kube, app=application(name), objects=objects, revision="rev-1", token=1)
    result = apply_unit(kube, app=application(name), objects=objects, revision="rev-2", token=2)
    assert result.counts["unchanged"] == 6 and result.writes == 1 and result.dry_runs == 0
    assert read_inventory(kube, name).revision == "rev-2"


def test_kubectl_scale_is_detected_as_drift_and_corrected(kube, kube_clients, unit):
    from kubernetes import client

    name, ns, objects = unit
    app = application(name)
    apply_unit(kube, app=app, objects=objects, revision="rev-1", token=1)
    apps = client.AppsV1Api(kube_clients["dev-1"])
    apps.patch_namespaced_deployment_scale(name, ns, {"spec": {"replicas": 5}})
    assert "spec.replicas: 5 -> 0" in format_diff(diff_unit(kube, app, objects))

    result = apply_unit(kube, app=app, objects=objects, revision="rev-1", token=2)
    assert result.counts["configured"] == 1 and result.drift_corrections == 1
    assert result.to_dict()["drift"] == {f"Deployment/{ns}/{name}": [
        "spec.replicas: 5 -> 0 (by OpenAPI-Generator)"]}       # who scaled it (the client)
    assert apps.read_namespaced_deployment(name, ns).spec.replicas == 0
    assert apply_unit(kube, app=app, objects=objects, revision="rev-1", token=3).writes == 0


def test_dry_run_only_validates_and_writes_nothing(kube, unit):
    name, ns, objects = unit
    result = apply_unit(kube, app=application(name), objects=objects, revision="rev-1", token=1,
                        dry_run_only=True)
    assert result.counts["created"] == 6 and result.writes == 0 and result.dry_runs == 6
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}") is None


def test_namespaced_objects_without_a_namespace_go_to_default_and_cluster_scoped_lose_it(kube):
    name = unique("scope")
    cm = configmap(name, "")
    del cm["metadata"]["namespace"]
    ns = namespace(unique("scope"))
    ns["metadata"]["namespace"] = "ignored"
    result = apply_unit(kube, app=application(name), objects=[cm, ns], revision="r", token=1)
    assert {str(c.ref) for c in result.changeset.entries} == {
        f"ConfigMap/default/{name}", f"Namespace/{ns['metadata']['name']}"}


def test_a_first_apply_probes_its_objects_instead_of_reading_them(kube):
    """No inventory yet: one dry-run per object tells both that it does not exist (201)
    and that it is valid, so the objects get no GET and no second dry-run."""
    ns = unique("probe")
    apply_unit(kube, app=application(unique("ns")), objects=[namespace(ns)], revision="r",
               token=1)
    name = unique("web")
    session = kube.session()
    result = apply_unit(session, app=application(name), revision="rev-1", token=1,
                        objects=[*web_app(name, ns), configmap("settings", ns, mode="a")])
    assert result.counts["created"] == 5
    assert result.dry_runs == 5 and result.writes == 6            # 5 applies, the inventory
    assert session.counters.by_method.get("GET", 0) == 1          # the inventory only


def test_a_first_apply_reads_what_exists_and_still_validates_what_changes(kube):
    """An object that exists answers the probe with 200: it is read (and refused when not
    ours, as before); an invalid object is found by the probe and named."""
    ns = unique("probe")
    apply_unit(kube, app=application(unique("ns")), objects=[namespace(ns)], revision="r",
               token=1)
    kube.create(f"/api/v1/namespaces/{ns}/configmaps", configmap("by-hand", ns, k="v"))
    name = unique("web")
    with pytest.raises(OwnershipError, match="by-hand"):
        apply_unit(kube, app=application(name), revision="rev-1", token=1,
                   objects=[configmap("by-hand", ns, k="w"), configmap("mine", ns)])
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/mine") is None
    adopted = apply_unit(kube, app=application(name, adopt=True), revision="rev-1", token=1,
                         objects=[configmap("by-hand", ns, k="w"), configmap("mine", ns)])
    assert adopted.counts["created"] == 1 and adopted.counts["configured"] == 1
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/by-hand")["data"] == {"k": "w"}
    bad = configmap("bad", ns)
    bad["metadata"]["name"] = "Not_A_Name"
    other = unique("web")
    with pytest.raises(ApplyError, match="Not_A_Name"):
        apply_unit(kube, app=application(other), revision="rev-1", token=1,
                   objects=[bad, configmap("fine", ns)])
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/fine") is None
