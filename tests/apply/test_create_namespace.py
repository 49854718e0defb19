"""``createNamespace``: the application's missing namespace is created, owned and pruned;
one that already existed is left alone.

The repository is what people write for Argo CD's ``CreateNamespace=true``: the
manifests carry no namespace and there is no Namespace object in Git.
"""

from __future__ import annotations

import dataclasses

import pytest

from shared.errors import ApplyError
from tests.support.gitrender import Repo
from workers.apply.diff import diff_unit, format_diff
from workers.apply.engine import apply_unit
from workers.apply.inventory import read as read_inventory
from workers.apply.kube import Kube
from workers.apply.refs import APP_LABEL, ObjectRef
from workers.apply.testing import application, namespace, unique

pytestmark = pytest.mark.k8s

FILES = {"apps/guestbook/settings.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"
                                         "data: {color: blue}\n"}


@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


def ns_path(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}"


def test_a_missing_namespace_fails_and_says_create_namespace(kube, tmp_path):
    name, ns = unique("guestbook"), unique("guestbook")
    app = application(name, path="apps/guestbook", namespace=ns)
    objects = Repo(tmp_path).write(FILES).render(app)
    with pytest.raises(ApplyError) as caught:
        apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    assert f'ConfigMap/{ns}/settings: namespaces "{ns}" not found: add the namespace to Git, ' \
           "or set createNamespace: true on the application" in caught.value.message


def test_create_namespace_creates_labels_and_records_it(kube, tmp_path):
    name, ns = unique("guestbook"), unique("guestbook")
    app = application(name, path="apps/guestbook", namespace=ns, create_namespace=True)
    repo = Repo(tmp_path).write(FILES)
    assert f"+ Namespace/{ns}" in format_diff(diff_unit(kube, app, repo.render(app)))
    result = apply_unit(kube, app=app, objects=repo.render(app), revision="r1", token=1)
    assert result.changeset.summary() == {"created": [f"Namespace/{ns}", f"ConfigMap/{ns}/settings"]}
    assert kube.get(ns_path(ns))["metadata"]["labels"][APP_LABEL] == name
    assert ObjectRef("v1", "Namespace", "", ns) in read_inventory(kube, name).refs
    again = apply_unit(kube, app=app, objects=repo.render(app), revision="r1", token=2)
    assert again.writes == 0 and again.counts["unchanged"] == 2

    # turned off, the namespace it created is pruned with what is no longer rendered
    off = dataclasses.replace(app, create_namespace=False, allow_empty=True)
    result = apply_unit(kube, app=off, objects=[], revision="r2", token=3)
    assert result.counts["pruned"] == 2
    live = kube.get_or_none(ns_path(ns))        # no namespace controller: it stays Terminating
    assert live is None or live["metadata"].get("deletionTimestamp")


def test_a_namespace_that_already_existed_is_used_but_never_owned(kube, tmp_path):
    name, ns = unique("guestbook"), unique("guestbook")
    kube.create("/api/v1/namespaces", namespace(ns))
    app = application(name, path="apps/guestbook", namespace=ns, create_namespace=True)
    repo = Repo(tmp_path).write(FILES)
    result = apply_unit(kube, app=app, objects=repo.render(app), revision="r1", token=1)
    assert result.changeset.summary() == {"created": [f"ConfigMap/{ns}/settings"]}
    assert APP_LABEL not in (kube.get(ns_path(ns))["metadata"].get("labels") or {})
    assert ObjectRef("v1", "Namespace", "", ns) not in read_inventory(kube, name).refs

    result = apply_unit(kube, app=dataclasses.replace(app, allow_empty=True), objects=[],
                        revision="r2", token=2)
    assert result.counts["pruned"] == 1
    assert not kube.get(ns_path(ns))["metadata"].get("deletionTimestamp")


def test_a_namespace_in_git_wins_over_create_namespace(kube, tmp_path):
    name, ns = unique("guestbook"), unique("guestbook")
    files = {**FILES, "apps/guestbook/ns.yaml": f"apiVersion: v1\nkind: Namespace\n"
                                                f"metadata: {{name: {ns}, labels: {{team: shop}}}}\n"}
    app = application(name, path="apps/guestbook", namespace=ns, create_namespace=True)
    result = apply_unit(kube, app=app, objects=Repo(tmp_path).write(files).render(app),
                        revision="r1", token=1)
    assert result.counts["created"] == 2
    assert kube.get(ns_path(ns))["metadata"]["labels"]["team"] == "shop"
