"""An application that rendered objects and now renders none is refused, nothing pruned.

The repositories are real: an application whose files moved into a
sub-directory that is not read by default (the commit renders nothing), and one
rewritten into Jsonnet (the render itself fails with "not supported").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from shared.errors import RenderError
from tests.support.gitrender import Repo
from workers.apply.engine import EMPTY, EmptyRender, apply_unit
from workers.apply.inventory import read as read_inventory
from workers.apply.kube import Kube
from workers.apply.testing import application, unique

pytestmark = pytest.mark.k8s


@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


def cm(name: str, ns: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {{a: '1'}}\n"


def deployed(kube: Kube, tmp_path: Path) -> tuple[Repo, str, str]:
    """A repository with a namespace and two ConfigMaps, applied once."""
    name, ns = unique("empty"), unique("empty")
    repo = Repo(tmp_path).write({
        "apps/shop/namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n",
        "apps/shop/settings.yaml": cm("settings", ns) + "---\n" + cm("flags", ns)})
    app = application(name, path="apps/shop")
    result = apply_unit(kube, app=app, objects=repo.render(app), revision="r1", token=1)
    assert result.counts["created"] == 3
    return repo, name, ns


def test_a_render_of_nothing_is_refused_when_the_unit_manages_objects(kube, tmp_path):
    repo, name, ns = deployed(kube, tmp_path)
    repo.remove("apps/shop/namespace.yaml", "apps/shop/settings.yaml").write({
        "apps/shop/v2/namespace.yaml": f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n",
        "apps/shop/v2/settings.yaml": cm("settings", ns)})
    app = application(name, path="apps/shop")
    objects = repo.render(app)                       # v2/ is not read without directory.recurse
    assert objects == []
    stored = read_inventory(kube, name)
    writes = kube.counters.snapshot()["writes"]
    with pytest.raises(EmptyRender) as caught:
        apply_unit(kube, app=app, objects=objects, revision="r2", token=2)
    assert caught.value.message == EMPTY == ("rendered 0 objects; refusing to prune everything it "
                                             "manages; set allowEmpty: true to allow")
    assert caught.value.reason == "EmptyRender" and caught.value.unit == f"dev-1/{name}"
    assert kube.counters.snapshot()["writes"] == writes           # nothing written at all
    assert read_inventory(kube, name) == stored
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/settings") is not None


def test_allow_empty_prunes_everything(kube, tmp_path):
    repo, name, ns = deployed(kube, tmp_path)
    app = application(name, path="apps/shop", allow_empty=True)
    repo.remove("apps/shop/settings.yaml", "apps/shop/namespace.yaml").write({"apps/shop/.keep": ""})
    result = apply_unit(kube, app=app, objects=repo.render(app), revision="r2", token=2)
    assert result.counts["pruned"] == 3
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/settings") is None
    assert read_inventory(kube, name).refs == ()


def test_an_application_that_never_rendered_anything_may_render_nothing(kube, tmp_path):
    repo = Repo(tmp_path).write({"apps/later/README.yaml": "todo: add manifests\n"})
    app = application(unique("empty"), path="apps/later")
    result = apply_unit(kube, app=app, objects=repo.render(app), revision="r1", token=1)
    assert not result.changeset.has_writes()


def test_an_app_rewritten_into_jsonnet_fails_to_render_and_keeps_its_objects(kube, tmp_path):
    repo, name, ns = deployed(kube, tmp_path)
    repo.remove("apps/shop/settings.yaml", "apps/shop/namespace.yaml").write({
        "apps/shop/main.jsonnet": "{ settings: { apiVersion: 'v1', kind: 'ConfigMap' } }\n"})
    app = application(name, path="apps/shop")
    with pytest.raises(RenderError, match=r"apps/shop/main\.jsonnet: not supported: Jsonnet"):
        repo.render(app)
    # even if a render of it reached the apply stage, prune would be refused
    with pytest.raises(EmptyRender):
        apply_unit(kube, app=dataclasses.replace(app, prune=False), objects=[], revision="r2",
                   token=2)
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}/configmaps/flags") is not None
