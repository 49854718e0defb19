"""An OCI artifact's tree renders as a Git checkout does: a kustomization and a Helm chart
directory from an artifact pushed with oras to the real registry (``stages.render``)."""

from __future__ import annotations

from pathlib import Path

from shared.settings import Settings
from tests.support.helmutil import helm  # noqa: F401  (a fixture: the real helm)
from tests.support.ociartifacts import push_artifact, tgz
from tests.support.registry import Registry, registry, unique_repo  # noqa: F401
from workers.context import Context
from workers.run import stages

CONFIG = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {cluster: '${cluster_name}'}\n"
FILES = {
    "kust/kustomization.yaml": "resources: [config.yaml]\nnamePrefix: k-\n",
    "kust/config.yaml": CONFIG,
    "chart/Chart.yaml": "apiVersion: v2\nname: web\nversion: 0.1.0\n",
    "chart/values.yaml": "replicas: 1\n",
    "chart/templates/config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n"
                                   "data: {replicas: '{{ .Values.replicas }}'}\n",
}
SPEC = """\
sources:
  - name: config
    oci: {{url: "oci://{host}/{repo}", tag: v1}}
    insecure: true
clusters:
  - name: dev
applications:
  - {{name: kust, source: config, path: kust, clusters: {{names: [dev]}}, namespace: web}}
  - name: chart
    source: config
    path: chart
    namespace: web
    clusters: {{names: [dev]}}
    helm: {{values: {{replicas: 3}}}}
"""


def test_a_kustomization_and_a_chart_directory_of_an_artifact_render(
        registry: Registry, helm: Path, tmp_path: Path) -> None:
    repo = unique_repo("config")
    digest = push_artifact(registry, repo, "v1", tgz(FILES), tmp_path / "p")
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC.format(host=registry.plain.host, repo=repo))
    ctx = Context.connect(Settings(fleet_path=str(spec), cache_dir=tmp_path / "cache",
                                   helm_bin=str(helm)), use_redis=False)
    revision = stages.fetch(ctx, "config")
    assert revision == digest[7:]
    kust = stages.render(ctx, stages.resolve_unit(ctx, "kust", "dev"), revision)
    assert [(o["kind"], o["metadata"]["name"], o["data"]) for o in kust.objects] == [
        ("ConfigMap", "k-settings", {"cluster": "dev"})]
    chart = stages.render(ctx, stages.resolve_unit(ctx, "chart", "dev"), revision)
    assert [(o["metadata"]["name"], o["data"]) for o in chart.objects] == [
        ("web", {"replicas": "3"})]
