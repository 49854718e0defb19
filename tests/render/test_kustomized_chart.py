"""A chart directory that also holds a kustomization (Argo CD's kustomized-helm layout):
built as the kustomization says, compared with what the real helm and kustomize give when
run as Argo CD's plugin runs them, or refused naming both files; never half rendered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.errors import RenderError
from shared.spec.model import Application, Cluster, Helm, Selector
from tests.support.gitrender import Repo
from tests.support.helmutil import chart, helm, run  # noqa: F401  (helm: a fixture)
from workers.render import helm as charts
from workers.render.engine import render_unit

CLUSTER = Cluster("prod-1", vars={"replicas": "3"})
KUSTOMIZATION = """\
namePrefix: kustomize-
commonLabels: {overlay: kustomized}
resources:
  - ./all.yaml
patches:
  - path: overlays/deployment.yaml
"""
PATCH = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: site-web}
spec:
  template:
    spec:
      containers:
        - name: web
          env: [{name: FROM_KUSTOMIZE, value: "yes"}]
"""


def kustomized(helm: Path, tmp_path: Path, kustomization: str = KUSTOMIZATION) -> Repo:
    repo = Repo(tmp_path)
    (repo.git.path / "apps").mkdir()
    chart(helm, repo.git.path / "apps", name="web", hook=False)
    repo.git.write("apps/web/kustomization.yaml", kustomization)
    repo.git.write("apps/web/overlays/deployment.yaml", PATCH)
    return repo


def application(**kw: Any) -> Application:
    return Application("site", "gitops", "apps/web", Selector(match_labels={}),
                       namespace="site", helm=Helm(values={"replicaCount": "${replicas}"}), **kw)


def by_name(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def as_argocd_plugin(helm: Path, chart_dir: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """``helm template . > all.yaml && kustomize build`` on a copy, with the same release,
    namespace and values fleetsync passes."""
    copy = tmp_path / "plugin"
    subprocess.run(["cp", "-r", str(chart_dir), str(copy)], check=True)
    (tmp_path / "values.json").write_text(json.dumps({"replicaCount": 3}))
    out = run(helm, "template", "site", str(copy), "--namespace", "site", "-f",
              str(tmp_path / "values.json"), "--include-crds", "--skip-tests")
    (copy / "all.yaml").write_text(out)
    kubectl = Path(sys.executable).parent / "kubectl"
    built = subprocess.run([str(kubectl), "kustomize", str(copy)], capture_output=True,
                           text=True, check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(built) if doc]


def test_the_kustomization_builds_over_the_charts_output(helm: Path, tmp_path: Path) -> None:
    repo = kustomized(helm, tmp_path)
    tree = repo.tree()
    rendered = by_name(render_unit(application(), CLUSTER, tree, None, "",
                                   helm=charts.Helm(str(helm))).objects)
    expected = by_name(as_argocd_plugin(helm, tree / "apps" / "web", tmp_path))
    assert sorted(rendered) == sorted(expected)
    assert "Deployment/kustomize-site-web" in rendered          # namePrefix over the chart
    for name, want in expected.items():
        got = rendered[name]
        assert got["metadata"]["labels"] == want["metadata"]["labels"], name
        assert got.get("spec") == want.get("spec"), name
        assert got["metadata"]["namespace"] == "site"
    deployment = rendered["Deployment/kustomize-site-web"]["spec"]
    assert deployment["replicas"] == 3                          # the cluster's values
    assert deployment["template"]["spec"]["containers"][0]["env"] == [
        {"name": "FROM_KUSTOMIZE", "value": "yes"}]             # the kustomization's patch
    assert not os.path.lexists(tree / "apps" / "web" / "all.yaml")   # the checkout untouched


def test_a_kustomization_that_names_no_output_is_refused_naming_both(helm: Path,
                                                                     tmp_path: Path) -> None:
    repo = kustomized(helm, tmp_path, "resources: [overlays/deployment.yaml]\n")
    with pytest.raises(RenderError) as caught:
        render_unit(application(), CLUSTER, repo.tree(), None, "", helm=charts.Helm(str(helm)))
    message = str(caught.value)
    assert "apps/web/Chart.yaml and apps/web/kustomization.yaml" in message
    assert "its resources name no file for the chart's output" in message
    assert "all.yaml" in message and "helmCharts" in message


def test_two_missing_resources_are_refused(helm: Path, tmp_path: Path) -> None:
    repo = kustomized(helm, tmp_path, "resources: [all.yaml, more.yaml]\n")
    with pytest.raises(RenderError, match="'all.yaml', 'more.yaml' are not in the repository"):
        render_unit(application(), CLUSTER, repo.tree(), None, "", helm=charts.Helm(str(helm)))


def test_helm_charts_rendering_the_chart_itself_are_a_kustomize_build(helm: Path,
                                                                      tmp_path: Path) -> None:
    repo = kustomized(helm, tmp_path, """\
        helmGlobals: {chartHome: ..}
        helmCharts: [{name: web, releaseName: inflated, namespace: site}]
        namePrefix: k-
        """.replace("        ", ""))
    tree = repo.tree()
    app = application(allow_helm_charts=True)
    objects = by_name(render_unit(app, CLUSTER, tree, None, "",
                                  helm=charts.Helm(str(helm))).objects)
    assert "Deployment/k-inflated-web" in objects
    with pytest.raises(RenderError, match="set allowHelmCharts: true"):
        render_unit(application(), CLUSTER, tree, None, "", helm=charts.Helm(str(helm)))


def test_helm_charts_of_another_chart_are_refused_naming_both(helm: Path,
                                                             tmp_path: Path) -> None:
    repo = kustomized(helm, tmp_path, "helmCharts: [{name: other}]\n")
    with pytest.raises(RenderError) as caught:
        render_unit(application(allow_helm_charts=True), CLUSTER, repo.tree(), None, "",
                    helm=charts.Helm(str(helm)))
    assert "apps/web/Chart.yaml and apps/web/kustomization.yaml" in str(caught.value)
    assert "do not render the chart beside it" in str(caught.value)


def test_inside_a_plain_directory_it_is_refused(helm: Path, tmp_path: Path) -> None:
    repo = kustomized(helm, tmp_path)
    repo.git.write("apps/namespace.yaml", "apiVersion: v1\nkind: Namespace\n"
                   "metadata: {name: site}\n")
    app = Application("all", "gitops", "apps", Selector(match_labels={}))
    with pytest.raises(RenderError, match="apps/web/Chart.yaml: a chart with a kustomization "
                       "over its output inside a plain directory is not rendered"):
        render_unit(app, CLUSTER, repo.tree(), None, "", helm=charts.Helm(str(helm)))
