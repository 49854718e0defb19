"""Validation: one invalid object means nothing is written, and every invalid one is named."""

from __future__ import annotations

import pytest

from shared.errors import ApplyError
from workers.apply.engine import apply_unit
from workers.apply.inventory import read as read_inventory
from workers.apply.kube import Kube
from workers.apply.testing import (application, configmap, deployment, namespace, service,
                                   service_account, unique)

pytestmark = pytest.mark.k8s


@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


def bad_deployment(name: str, ns: str) -> dict:
    obj = deployment(name, ns)
    obj["spec"]["replicas"] = -1
    return obj


def bad_service(name: str, ns: str) -> dict:
    obj = service(name, ns)
    obj["spec"]["ports"][0]["port"] = 70000
    return obj


def assert_nothing_written(kube: Kube, before: dict, app: str) -> None:
    assert before["writes"] == kube.counters.snapshot()["writes"]
    assert read_inventory(kube, app).resource_version is None


def test_invalid_object_in_an_existing_namespace_blocks_the_whole_apply(kube):
    ns, name = unique("valid"), unique("app")
    kube.create("/api/v1/namespaces", namespace(ns))
    objects = [configmap("ok", ns, a="1"), service_account("ok", ns), bad_deployment(name, ns)]
    before = kube.counters.snapshot()
    with pytest.raises(ApplyError) as caught:
        apply_unit(kube, app=application(name), objects=objects, revision="r1", token=1)
    message = str(caught.value)
    assert f"Deployment/{ns}/{name}: " in message
    assert "spec.replicas: Invalid value: -1" in message        # the API server's own words
    assert "nothing was applied" in message
    assert "ConfigMap" not in message and "ServiceAccount" not in message
    assert_nothing_written(kube, before, name)
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/ok") is None


def test_every_invalid_object_is_reported_at_once(kube):
    ns, name = unique("valid"), unique("app")
    kube.create("/api/v1/namespaces", namespace(ns))
    objects = [bad_service("svc", ns), configmap("ok", ns), bad_deployment(name, ns)]
    with pytest.raises(ApplyError) as caught:
        apply_unit(kube, app=application(name), objects=objects, revision="r1", token=1)
    message = str(caught.value)
    assert message.count("Invalid value") == 2
    assert f"Service/{ns}/svc: " in message and "70000" in message
    assert f"Deployment/{ns}/{name}: " in message


def test_invalid_object_in_a_namespace_the_render_creates_is_caught_before_any_write(kube):
    ns, name = unique("fresh"), unique("app")
    objects = [namespace(ns), configmap("ok", ns), bad_deployment(name, ns)]
    before = kube.counters.snapshot()
    with pytest.raises(ApplyError) as caught:
        apply_unit(kube, app=application(name), objects=objects, revision="r1", token=1)
    assert f"Deployment/{ns}/{name}: " in str(caught.value)
    assert "spec.replicas: Invalid value: -1" in str(caught.value)
    assert_nothing_written(kube, before, name)
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}") is None       # not even the namespace


def test_valid_objects_in_a_namespace_the_render_creates_are_applied(kube):
    ns, name = unique("fresh"), unique("app")
    result = apply_unit(kube, app=application(name), objects=[namespace(ns), configmap("ok", ns),
                        deployment(name, ns)], revision="r1", token=1)
    assert result.counts["created"] == 3 and result.unvalidated == ()


def test_a_namespace_that_neither_exists_nor_is_rendered_is_reported(kube):
    ns, name = unique("missing"), unique("app")
    with pytest.raises(ApplyError) as caught:
        apply_unit(kube, app=application(name), objects=[configmap("c", ns)], revision="r1",
                   token=1)
    assert f"ConfigMap/{ns}/c: " in str(caught.value)
    assert f'namespaces "{ns}" not found' in str(caught.value)


def test_an_invalid_update_leaves_the_live_objects_as_they_were(kube):
    ns, name = unique("valid"), unique("app")
    good = [namespace(ns), configmap("c", ns, v="1"), deployment(name, ns)]
    apply_unit(kube, app=application(name), objects=good, revision="r1", token=1)
    stored = read_inventory(kube, name)
    changed = [namespace(ns), configmap("c", ns, v="2"), bad_deployment(name, ns)]
    with pytest.raises(ApplyError, match="replicas"):
        apply_unit(kube, app=application(name), objects=changed, revision="r2", token=2)
    assert kube.get(f"/api/v1/namespaces/{ns}/configmaps/c")["data"] == {"v": "1"}
    assert read_inventory(kube, name) == stored


def test_an_unknown_kind_names_the_object(kube):
    name = unique("app")
    widget = {"apiVersion": "example.invalid/v1", "kind": "Gadget",
              "metadata": {"name": "g", "namespace": "default"}}
    with pytest.raises(ApplyError, match=r"unknown kind .*Gadget/default/g"):
        apply_unit(kube, app=application(name), objects=[widget], revision="r1", token=1)
