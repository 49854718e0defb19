"""A CRD and custom resources of it in one apply; discovery learns the new kind."""

from __future__ import annotations

import uuid

import pytest

from shared.errors import ApplyError
from workers.apply.discovery import PROCESS
from workers.apply.engine import apply_unit
from workers.apply.kube import Kube
from workers.apply.refs import ObjectRef
from workers.apply.testing import application, crd, namespace, unique

pytestmark = pytest.mark.k8s


@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


def widget_group() -> str:
    return f"w{uuid.uuid4().hex[:8]}.example.com"


def widget(group: str, name: str, ns: str, size: int = 1) -> dict:
    return {"apiVersion": f"{group}/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": ns}, "spec": {"size": size, "color": "red"}}


def test_crd_and_its_custom_resource_in_one_apply(kube):
    group, ns, name = widget_group(), unique("crd"), unique("crd")
    objects = [widget(group, "w1", ns), namespace(ns), crd(group, "Widget", "widgets")]
    result = apply_unit(kube, app=application(name), objects=objects, revision="r1", token=1)
    assert result.counts["created"] == 3
    assert [str(c.ref) for c in result.changeset.entries] == [
        f"Namespace/{ns}", f"CustomResourceDefinition/widgets.{group}", f"Widget/{ns}/w1"]
    assert result.unvalidated == (f"Widget/{ns}/w1: its CRD is applied in this same run",)
    live = kube.get(f"/apis/{group}/v1/namespaces/{ns}/widgets/w1")
    assert live["spec"] == {"size": 1, "color": "red"}
    # discovery was refreshed: the kind is served now, and a no-op costs no write
    assert (f"{group}/v1", "Widget") in PROCESS.catalog(kube)
    again = apply_unit(kube, app=application(name), objects=objects, revision="r1", token=2)
    assert again.writes == 0 and again.counts["unchanged"] == 3


def test_custom_resource_of_an_established_crd_is_validated_by_its_schema(kube):
    group, ns, name = widget_group(), unique("crd"), unique("crd")
    apply_unit(kube, app=application(name), objects=[namespace(ns), crd(group, "Widget",
               "widgets")], revision="r1", token=1)
    bad = widget(group, "w1", ns, size=0)
    with pytest.raises(ApplyError) as caught:
        apply_unit(kube, app=application(name), objects=[namespace(ns), crd(group, "Widget",
                   "widgets"), bad], revision="r2", token=2)
    assert f"Widget/{ns}/w1: " in str(caught.value)
    assert "spec.size" in str(caught.value) and "nothing was applied" in str(caught.value)


def test_custom_resource_without_its_crd_is_an_unknown_kind(kube):
    group, name = widget_group(), unique("crd")
    with pytest.raises(ApplyError, match=rf"unknown kind for 1 object\(s\): Widget/default/w1"):
        apply_unit(kube, app=application(name), objects=[widget(group, "w1", "default")],
                   revision="r1", token=1)


def test_cluster_scoped_custom_resources_follow_the_crd_scope(kube):
    group, name = widget_group(), unique("crd")
    cluster_widget = widget(group, unique("w"), "ignored")
    result = apply_unit(kube, app=application(name), objects=[
        crd(group, "Widget", "widgets", scope="Cluster"), cluster_widget], revision="r1", token=1)
    (created,) = [c.ref for c in result.changeset.entries if c.ref.kind == "Widget"]
    assert created == ObjectRef(f"{group}/v1", "Widget", "", cluster_widget["metadata"]["name"])


def test_an_invalid_custom_resource_of_a_new_crd_fails_but_the_crd_is_inventoried(kube):
    from workers.apply.inventory import read as read_inventory
    from workers.apply.refs import ref_of

    group, ns, name = widget_group(), unique("crd"), unique("crd")
    definition = crd(group, "Widget", "widgets")
    objects = [namespace(ns), definition, widget(group, "w1", ns, size=0)]
    with pytest.raises(ApplyError) as caught:
        apply_unit(kube, app=application(name), objects=objects, revision="r1", token=1)
    assert f"1 object(s) failed to apply:\n  Widget/{ns}/w1: " in str(caught.value)
    stored = read_inventory(kube, name)
    assert set(stored.refs) == {ref_of(namespace(ns)), ref_of(definition)}
    assert stored.revision == ""                 # r1 was not applied in full
