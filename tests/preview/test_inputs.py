"""Which units a candidate leaves alone, decided from Git's changed files and tree: pure."""

from __future__ import annotations

import pytest

from shared.spec.model import Application, Cluster, Selector
from workers.run.preview_inputs import Changes

EDGE = Cluster("edge-1")


def app(path: str, **kw) -> Application:
    return Application("web", "git", path, Selector(names=("edge-1",)), **kw)


TREE = [("100644", "apps/web/deploy.yaml"), ("100644", "apps/api/deploy.yaml"),
        ("100644", "overlays/edge-1/kustomization.yaml"), ("100644", "base/deploy.yaml"),
        ("120000", "linked/deploy.yaml"), ("100644", "linked/cm.yaml"),
        ("100644", "charts/web/Chart.yaml"), ("100644", "charts/web/values.yaml")]


@pytest.mark.parametrize("path, changed, untouched", [
    ("apps/web", ["apps/api/deploy.yaml"], True),            # another app's file
    ("apps/web", ["apps/web/deploy.yaml"], False),
    ("./apps/web/", ["apps/webx/deploy.yaml"], True),         # a name that only shares a prefix
    ("apps/${cluster_name}", ["apps/edge-1/x.yaml"], False),  # after substitution
    ("overlays/edge-1", ["apps/api/deploy.yaml"], False),     # a kustomization may reach ../base
    ("linked", ["apps/api/deploy.yaml"], False),              # a link may point anywhere
    ("charts/web", ["apps/api/deploy.yaml"], False),          # a chart's dependencies
    (".", ["apps/api/deploy.yaml"], False),                   # the whole repository
    ("apps/web", [], True),
])
def test_a_unit_is_untouched_only_when_nothing_it_may_read_changed(path, changed, untouched):
    assert Changes.of(changed, TREE).untouched(app(path), EDGE) is untouched


def test_remote_bases_are_never_decided_from_git():
    assert not Changes.of([], TREE).untouched(app("apps/web", allow_remote_bases=True), EDGE)
