"""Unknown kinds told apart: a removed built-in version, a CRD not serving a version, no CRD.

The hint itself is pure and tested with catalogs; the same cases then go
through ``apply_unit`` against a real API server (Kubernetes v1.37), which no
longer serves ``policy/v1beta1`` or ``extensions/v1beta1``.
"""

from __future__ import annotations

import uuid

import pytest

from shared.errors import ApplyError
from workers.apply.engine import apply_unit
from workers.apply.hints import builtin, hint
from workers.apply.kube import Kube
from workers.apply.refs import ObjectRef
from workers.apply.testing import application, crd, unique

SERVED = [("policy/v1", "PodDisruptionBudget"), ("networking.k8s.io/v1", "Ingress"),
          ("apps/v1", "Deployment"), ("v1", "ConfigMap")]
WIDGETS = crd("w.example.com", "Widget", "widgets")


def test_builtin_groups() -> None:
    assert all(builtin(g) for g in ("", "apps", "policy", "extensions", "networking.k8s.io",
                                    "metrics.k8s.io", "resource.kubernetes.io"))
    assert not any(builtin(g) for g in ("example.com", "cert-manager.io", "k8s.io.example.com"))


@pytest.mark.parametrize("ref, crds, expected", [
    (ObjectRef("policy/v1beta1", "PodDisruptionBudget", "web", "pdb"), [],
     "policy/v1beta1 is not served by this cluster (Kubernetes v1.37); use policy/v1"),
    (ObjectRef("extensions/v1beta1", "Ingress", "web", "in"), [],
     "extensions/v1beta1 is not served by this cluster (Kubernetes v1.37); use networking.k8s.io/v1"),
    (ObjectRef("apps/v1", "Deploymnt", "web", "d"), [],
     "kind Deploymnt is not served in apps/v1 by this cluster (Kubernetes v1.37)"),
    (ObjectRef("w.example.com/v2", "Widget", "web", "w"), [WIDGETS],
     "w.example.com/v2 is not served by the CustomResourceDefinition widgets.w.example.com "
     "(it serves w.example.com/v1); use one of those, or add the version to the CRD"),
    (ObjectRef("w.example.com/v1", "Widget", "web", "w"), [WIDGETS],
     "the CustomResourceDefinition widgets.w.example.com serves w.example.com/v1 but is not "
     "established yet; look at its status conditions"),
    (ObjectRef("g.example.com/v1", "Gadget", "web", "g"), [WIDGETS],
     "no CustomResourceDefinition defines kind Gadget in group g.example.com on this cluster "
     "(Kubernetes v1.37): install the CRD first, or add it to this application"),
    (ObjectRef("g.example.com/v1", "Gadget", "web", "g"), None,
     "kind Gadget in g.example.com/v1 is not served by this cluster (Kubernetes v1.37); is its "
     "CustomResourceDefinition installed and established? (the CRD list could not be read)"),
])
def test_hint(ref: ObjectRef, crds: list[dict] | None, expected: str) -> None:
    assert hint(ref, SERVED, crds, "v1.37") == expected


# -- against a real API server ----------------------------------------------------

@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


def refused(kube: Kube, obj: dict) -> str:
    with pytest.raises(ApplyError) as caught:
        apply_unit(kube, app=application(unique("hints")), objects=[obj], revision="r1", token=1)
    return caught.value.message


@pytest.mark.k8s
def test_a_removed_builtin_version_names_the_served_one(kube) -> None:
    pdb = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "web", "namespace": "default"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
    assert refused(kube, pdb) == ("unknown kind for 1 object(s): PodDisruptionBudget/default/web: "
                                  "policy/v1beta1 is not served by this cluster (Kubernetes v1.37); "
                                  "use policy/v1")
    ingress = {"apiVersion": "extensions/v1beta1", "kind": "Ingress",
               "metadata": {"name": "web", "namespace": "default"}, "spec": {}}
    assert refused(kube, ingress).endswith("extensions/v1beta1 is not served by this cluster "
                                           "(Kubernetes v1.37); use networking.k8s.io/v1")


@pytest.mark.k8s
def test_a_crd_that_does_not_serve_the_version_is_named(kube) -> None:
    group = f"w{uuid.uuid4().hex[:8]}.example.com"
    apply_unit(kube, app=application(unique("hints")), objects=[crd(group, "Widget", "widgets")],
               revision="r1", token=1)
    widget = {"apiVersion": f"{group}/v2", "kind": "Widget",
              "metadata": {"name": "w", "namespace": "default"}, "spec": {"size": 1}}
    assert refused(kube, widget).endswith(
        f"{group}/v2 is not served by the CustomResourceDefinition widgets.{group} (it serves "
        f"{group}/v1); use one of those, or add the version to the CRD")


@pytest.mark.k8s
def test_a_missing_crd_says_install_it(kube) -> None:
    group = f"g{uuid.uuid4().hex[:8]}.example.com"
    gadget = {"apiVersion": f"{group}/v1", "kind": "Gadget",
              "metadata": {"name": "g", "namespace": "default"}}
    assert refused(kube, gadget).endswith(
        f"no CustomResourceDefinition defines kind Gadget in group {group} on this cluster "
        "(Kubernetes v1.37): install the CRD first, or add it to this application")


def test_the_catalog_cache_keeps_the_most_recently_used_servers(monkeypatch):
    """A fleet of thousands of clusters: a process keeps a bounded number of catalogs."""
    from types import SimpleNamespace

    from workers.apply import discovery as disc

    fetched: list[str] = []
    monkeypatch.setattr(disc, "fetch", lambda kube: fetched.append(kube.server) or {})
    cache = disc.Discovery(servers=2)
    a, b, c = (SimpleNamespace(server=f"https://{n}:6443") for n in "abc")
    cache.catalog(a), cache.catalog(b), cache.catalog(a)      # a is the most recent
    cache.catalog(c)                                            # b goes
    cache.catalog(a), cache.catalog(c)
    assert fetched == [a.server, b.server, c.server]
    cache.catalog(b)
    assert fetched[-1] == b.server and len(fetched) == 4
