"""Helm charts rendered by the real helm: from a real Helm repository over loopback HTTP
and from a path in a real Git repository, per cluster, through the real render cache.

The chart is what ``helm create`` makes (plus a pre-upgrade hook Job); the
repository is ``helm package`` + ``helm repo index`` served by a small HTTP
server in a thread. Tests that need helm build it with ``fleetsync dev build``
first: in CI they fail without it, elsewhere they skip.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from shared.errors import RenderError, SourceError, TransientError
from shared.spec.model import (HELM_REPOSITORY, Application, Chart, Cluster, ClusterValues, Helm,
                               Selector, Source)
from tests.support.gitrender import Repo
from tests.support.helmutil import ChartServer, chart, helm, run  # noqa: F401  (helm: a fixture)
from workers.render import helm as charts
from workers.fetch.helmrepo import ChartRepositories
from workers.render.engine import render, render_unit
from workers.render.cache import RenderCache

PROD = Cluster("prod-1", labels={"env": "prod"}, vars={"replicas": "3"})
DEV = Cluster("dev-1", labels={"env": "dev"}, vars={"replicas": "1"})
PROD_2 = Cluster("prod-2", labels={"env": "prod"}, vars={"replicas": "3"})


@pytest.fixture()
def server(helm: Path, tmp_path: Path) -> Iterator[ChartServer]:
    found = ChartServer(helm, tmp_path / "repo")
    found.publish(chart(helm, _fresh(tmp_path / "v1"), version="0.1.0"))
    yield found
    found.close()


def source(server: ChartServer, **kw: Any) -> Source:
    return Source("charts", server.url, HELM_REPOSITORY, "", 60.0, insecure=True, **kw)


def application(version: str = "0.1.x", **helm_kw: Any) -> Application:
    values = {"replicaCount": "${replicas}", "image": {"tag": "1.27"}}
    return Application("web", "charts", "", Selector(match_labels={}), namespace="web",
                       chart=Chart("web", version),
                       helm=Helm(values=values, **helm_kw))


def kinds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def render_repo(server: ChartServer, app: Application, cluster: Cluster, root: Path,
                cache: RenderCache | None = None, helm_run: charts.Helm | None = None):
    repos = ChartRepositories(root)
    src = source(server)
    revision = repos.fetch(src)
    archive = repos.chart(src, app.chart, revision)   # type: ignore[arg-type]
    return render_unit(app, cluster, None, cache, revision, "charts",
                       helm=helm_run or charts.Helm(str(server.helm)), archive=archive)


def test_a_repository_chart_renders_each_clusters_values(server: ChartServer,
                                                         tmp_path: Path) -> None:
    overlay = ClusterValues(Selector(match_labels={"env": "prod"}),
                            {"service": {"port": 8080}})
    app = application(values_by_cluster=(overlay,))
    prod = kinds(render_repo(server, app, PROD, tmp_path / "cache").objects)
    dev = kinds(render_repo(server, app, DEV, tmp_path / "cache").objects)
    assert prod["Deployment/web"]["spec"]["replicas"] == 3
    assert dev["Deployment/web"]["spec"]["replicas"] == 1
    assert prod["Service/web"]["spec"]["ports"][0]["port"] == 8080
    assert dev["Service/web"]["spec"]["ports"][0]["port"] == 80
    assert prod["Deployment/web"]["metadata"]["namespace"] == "web"
    image = prod["Deployment/web"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "nginx:1.27"
    # the chart's test hook is skipped; its pre-upgrade hook stays, annotations and all
    assert not any("test-connection" in name for name in prod)
    hook = prod["Job/web-migrate"]["metadata"]["annotations"]
    assert hook == {"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-weight": "-5",
                    "helm.sh/hook-delete-policy": "before-hook-creation"}
    # downloaded once for the host, whatever the number of renders
    assert server.counts["/web-0.1.0.tgz"] == 1


def test_equal_values_run_helm_once(server: ChartServer, tmp_path: Path,
                                    redis_client: Any) -> None:
    cache = RenderCache(redis_client, 300)
    app = application()
    first = render_repo(server, app, PROD, tmp_path / "cache", cache)
    second = render_repo(server, app, PROD_2, tmp_path / "cache", cache)
    other = render_repo(server, app, DEV, tmp_path / "cache", cache)
    assert (first.hit, second.hit, other.hit) == (False, True, False)
    assert first.key.startswith("prod-1/") and second.key.startswith("prod-2/")
    assert kinds(second.objects)["Deployment/web"]["spec"]["replicas"] == 3


def test_the_highest_version_in_range_wins_and_exact_versions_pin(
        server: ChartServer, helm: Path, tmp_path: Path) -> None:
    newer = chart(helm, _fresh(tmp_path / "v2"), version="0.2.0")
    server.publish(newer)
    repos = ChartRepositories(tmp_path / "cache")
    revision = repos.fetch(source(server))
    assert repos.chart(source(server), Chart("web", ">=0.1.0 <1.0.0"), revision).version == "0.2.0"
    assert repos.chart(source(server), Chart("web", "0.1.0"), revision).version == "0.1.0"


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def test_a_version_that_does_not_exist_names_the_versions(server: ChartServer,
                                                          tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        render_repo(server, application(version="9.9.9"), PROD, tmp_path / "cache")
    assert "chart web: no version matches '9.9.9' (versions: 0.1.0)" in str(caught.value)


def test_a_missing_chart_is_permanent_and_names_the_charts(server: ChartServer,
                                                           tmp_path: Path) -> None:
    app = Application("db", "charts", "", Selector(), chart=Chart("postgres", "1.x"))
    with pytest.raises(SourceError) as caught:
        render_repo(server, app, PROD, tmp_path / "cache")
    assert "chart postgres is not in the repository" in str(caught.value)
    assert "(charts there: web)" in str(caught.value)


def test_an_unreachable_repository_is_transient(server: ChartServer, tmp_path: Path) -> None:
    server.close()
    with pytest.raises(TransientError) as caught:
        ChartRepositories(tmp_path / "cache").fetch(source(server))
    assert f"cannot reach {server.url}/index.yaml" in str(caught.value)


def test_plain_http_needs_insecure_and_never_carries_credentials(server: ChartServer,
                                                                 tmp_path: Path) -> None:
    from shared.spec.model import Auth

    repos = ChartRepositories(tmp_path / "cache")
    plain = Source("charts", server.url, HELM_REPOSITORY, "", 60.0)
    with pytest.raises(SourceError, match="plain http:// is refused"):
        repos.fetch(plain)
    with pytest.raises(SourceError, match="credentials are never sent over plain http://"):
        repos.fetch(source(server, auth=Auth(username_env="U", password_env="P")))
    assert sum(server.counts.values()) == 0


def test_a_tampered_archive_is_refused_and_not_kept(server: ChartServer, helm: Path,
                                                    tmp_path: Path) -> None:
    other = chart(helm, _fresh(tmp_path / "other"), version="0.1.0")
    (other / "templates" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: planted\n")
    archive = server.archive("web", "0.1.0")
    run_dir = _fresh(tmp_path / "pkg")
    run(helm, "package", str(other), "-d", str(run_dir))
    shutil.copyfile(run_dir / "web-0.1.0.tgz", archive)      # the index still has the old digest
    with pytest.raises(SourceError) as caught:
        render_repo(server, application(), PROD, tmp_path / "cache")
    assert "chart web 0.1.0: the archive downloaded from" in str(caught.value)
    assert "as the repository index says; refusing it" in str(caught.value)
    assert not list((tmp_path / "cache" / "charts").glob("*.tgz"))


# --- charts in Git ---------------------------------------------------------------------------

def git_chart(helm: Path, tmp_path: Path) -> Repo:
    repo = Repo(tmp_path)
    chart(helm, _fresh(repo.git.path / "charts"))
    repo.git.write("values/prod.yaml", "service:\n  type: NodePort\n")
    return repo


def git_app(values: dict[str, Any] | None = None, **helm_kw: Any) -> Application:
    values = {"replicaCount": "${replicas}"} if values is None else values
    return Application("site", "gitops", "charts/web", Selector(match_labels={}), namespace="site",
                       helm=Helm(values=values, **helm_kw))


def test_a_chart_in_git_renders_with_values_files(helm: Path, tmp_path: Path) -> None:
    repo = git_chart(helm, tmp_path)
    app = git_app(values_files=("values/prod.yaml",))
    objects = kinds(render_unit(app, PROD, repo.tree(), None, "",
                                helm=charts.Helm(str(helm))).objects)
    assert objects["Service/site-web"]["spec"]["type"] == "NodePort"
    assert objects["Deployment/site-web"]["spec"]["replicas"] == 3
    assert objects["Deployment/site-web"]["metadata"]["namespace"] == "site"


def failure(helm: Path, tree: Path, app: Application, **run_kw: Any) -> str:
    with pytest.raises(RenderError) as caught:
        render_unit(app, PROD, tree, None, "", helm=charts.Helm(str(helm), **run_kw))
    return str(caught.value)


def test_a_template_error_names_the_template_and_line(helm: Path, tmp_path: Path) -> None:
    repo = git_chart(helm, tmp_path)
    service = repo.git.path / "charts/web/templates/service.yaml"
    service.write_text(service.read_text().replace("spec:", "spec:\n  x: {{ .Values.nope.deeper }}", 1))
    message = failure(helm, repo.tree(), git_app())
    assert message.startswith("prod-1/site: charts/web: helm template failed: template: "
                              "web/templates/service.yaml:"), message
    assert "nil pointer evaluating interface {}.deeper" in message


def test_a_schema_violation_names_the_field(helm: Path, tmp_path: Path) -> None:
    repo = git_chart(helm, tmp_path)
    repo.git.write("charts/web/values.schema.json",
                   '{"type": "object", "properties": {"replicaCount": {"type": "integer"}}}')
    message = failure(helm, repo.tree(), git_app(values={"replicaCount": "many"}))
    assert "values don't meet the specifications of the schema" in message
    assert "/replicaCount" in message and "want integer" in message


def test_output_over_the_render_cap_is_refused(helm: Path, tmp_path: Path) -> None:
    repo = git_chart(helm, tmp_path)
    repo.git.write("charts/web/templates/big.yaml", (
        "{{- range $i := until 400 }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n"
        "  name: big-{{ $i }}\ndata:\n  blob: {{ repeat 1000 \"x\" | quote }}\n{{- end }}\n"))
    message = failure(helm, repo.tree(), git_app(), max_bytes=256 * 1024)
    assert "charts/web: helm template output is larger than 262144 bytes (the render cap)" in message


def test_plain_directory_hooks_are_still_refused(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    repo.git.write("app/job.yaml", "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\n"
                                   "  annotations:\n    helm.sh/hook: pre-install\n")
    with pytest.raises(RenderError, match="a Helm hook outside a chart"):
        render(Application("a", "gitops", "app", Selector()), PROD, repo.tree())


# --- kustomize helmCharts ----------------------------------------------------------------------

KUSTOMIZATION = """helmCharts:
  - name: web
    releaseName: shop
    namespace: shop
    valuesInline: {replicaCount: 4}
"""


def test_kustomize_helm_charts_need_allow_helm_charts(helm: Path, tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    chart(helm, _fresh(repo.git.path / "shop" / "charts"))
    repo.git.write("shop/kustomization.yaml", KUSTOMIZATION)
    tree = repo.tree()
    app = Application("shop", "gitops", "shop", Selector())
    with pytest.raises(RenderError, match="set allowHelmCharts: true"):
        render_unit(app, PROD, tree, None, "")
    allowed = Application("shop", "gitops", "shop", Selector(), allow_helm_charts=True)
    objects = kinds(render_unit(allowed, PROD, tree, None, "",
                                helm=charts.Helm(str(helm))).objects)
    assert objects["Deployment/shop-web"]["spec"]["replicas"] == 4


def test_kustomize_never_downloads_a_chart(helm: Path, tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    repo.git.write("shop/kustomization.yaml", KUSTOMIZATION + "    repo: https://charts.example.com\n")
    allowed = Application("shop", "gitops", "shop", Selector(), allow_helm_charts=True)
    with pytest.raises(RenderError, match="is not vendored in shop/charts/web"):
        render_unit(allowed, PROD, repo.tree(), None, "", helm=charts.Helm(str(helm)))


VERSIONED = """helmCharts:
  - name: web
    version: 0.1.0
    repo: {url}
    releaseName: shop
    namespace: shop
    valuesInline: {{replicaCount: 2}}
"""

GENERATOR = """apiVersion: builtin
kind: HelmChartInflationGenerator
metadata: {{name: shop}}
name: web
version: 0.1.0
repo: {url}
releaseName: shop
"""


def test_kustomize_never_pulls_a_versioned_chart(server: ChartServer, helm: Path,
                                                 tmp_path: Path) -> None:
    """With a version, kustomize reads charts/<name>-<version>/<name> and pulls it when it
    is missing: a chart vendored in charts/<name> must not let that happen."""
    repo = Repo(tmp_path)
    chart(helm, _fresh(repo.git.path / "shop" / "charts"))
    repo.git.write("shop/kustomization.yaml", VERSIONED.format(url=server.url))
    allowed = Application("shop", "gitops", "shop", Selector(), allow_helm_charts=True)
    with pytest.raises(RenderError, match="is not vendored in shop/charts/web-0.1.0/web"):
        render_unit(allowed, PROD, repo.tree(), None, "", helm=charts.Helm(str(helm)))
    assert sum(server.counts.values()) == 0
    # vendored where kustomize looks: rendered from there, still without a request
    repo = Repo(tmp_path / "vendored")
    chart(helm, _fresh(repo.git.path / "shop" / "charts" / "web-0.1.0"))
    repo.git.write("shop/kustomization.yaml", VERSIONED.format(url=server.url))
    objects = kinds(render_unit(allowed, PROD, repo.tree(), None, "",
                                helm=charts.Helm(str(helm))).objects)
    assert objects["Deployment/shop-web"]["spec"]["replicas"] == 2
    assert sum(server.counts.values()) == 0


def test_a_helm_generator_file_cannot_make_kustomize_pull(server: ChartServer, helm: Path,
                                                          tmp_path: Path) -> None:
    """A generators: file of the builtin HelmChartInflationGenerator names no helmCharts key:
    kustomize's helm command refuses the pull itself."""
    repo = Repo(tmp_path)
    repo.git.write("shop/kustomization.yaml", "generators:\n  - helm.yaml\n")
    repo.git.write("shop/helm.yaml", GENERATOR.format(url=server.url))
    allowed = Application("shop", "gitops", "shop", Selector(), allow_helm_charts=True)
    with pytest.raises(RenderError, match="fleetsync does not let kustomize run helm pull"):
        render_unit(allowed, PROD, repo.tree(), None, "", helm=charts.Helm(str(helm)))
    assert sum(server.counts.values()) == 0
