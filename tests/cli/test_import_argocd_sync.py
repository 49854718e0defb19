"""``fleetsync import argocd`` on a repository in the shape of argocd-example-apps (a
multi-cluster ApplicationSet over a kustomize guestbook, a Helm guestbook with value files
and parameters), then ``fleetsync validate`` and ``fleetsync sync --local`` against real
API servers: the clusters hold what kustomize and helm render from the originals. Bad
inputs beside them (a plugin source, generators that cannot be expanded, a YAML file that
is not Kubernetes) are named in the summary and the rest is imported."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import new_redis_db
from tests.support.gitutil import GitRepo
from tests.support.helmutil import chart, helm, run  # noqa: F401  (helm: a fixture)
from tests.support.importsync import (assert_live, documents, env, imported, kustomize, sync,
                                      validate)

pytestmark = [pytest.mark.k8s]

GUESTBOOK = {
    "kustomization.yaml": """\
        resources: [guestbook-ui-config.yaml, guestbook-ui-svc.yaml]
        commonLabels: {app.kubernetes.io/part-of: guestbook}
        """,
    "guestbook-ui-config.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: guestbook-ui}
        data: {title: Guestbook, backend: redis-master}
        """,
    "guestbook-ui-svc.yaml": """\
        apiVersion: v1
        kind: Service
        metadata: {name: guestbook-ui}
        spec:
          ports: [{port: 80, targetPort: 80}]
          selector: {app: guestbook-ui}
        """,
}


def manifests(url: str, ns: str) -> dict[str, str]:
    return {
        "guestbook-appset.yaml": f"""\
            apiVersion: argoproj.io/v1alpha1
            kind: ApplicationSet
            metadata: {{name: guestbook, namespace: argocd}}
            spec:
              generators:
                - list:
                    elements: [{{cluster: dev-1}}, {{cluster: dev-2}}]
              template:
                metadata: {{name: '{{{{cluster}}}}-guestbook'}}
                spec:
                  project: default
                  source: {{repoURL: '{url}', targetRevision: HEAD, path: guestbook}}
                  destination: {{name: '{{{{cluster}}}}', namespace: {ns}}}
                  syncPolicy:
                    automated: {{prune: true, selfHeal: true}}
                    syncOptions: [CreateNamespace=true]
            """,
        "helm-guestbook.yaml": f"""\
            apiVersion: argoproj.io/v1alpha1
            kind: Application
            metadata: {{name: helm-guestbook, namespace: argocd}}
            spec:
              project: default
              source:
                repoURL: '{url}'
                path: helm-guestbook
                helm:
                  valueFiles: [values-production.yaml]
                  parameters: [{{name: replicaCount, value: "2"}}]
              destination: {{name: work-1, namespace: {ns}-helm}}
              syncPolicy:
                automated: {{prune: true}}
                syncOptions: [CreateNamespace=true]
            """,
        "bad/plugin.yaml": f"""\
            apiVersion: argoproj.io/v1alpha1
            kind: Application
            metadata: {{name: kustomized-helm}}
            spec:
              source: {{repoURL: '{url}', path: kustomized-helm, plugin: {{name: kustomized-helm}}}}
              destination: {{name: dev-1, namespace: {ns}}}
            """,
        "bad/generators.yaml": f"""\
            apiVersion: argoproj.io/v1alpha1
            kind: ApplicationSet
            metadata: {{name: matrix}}
            spec:
              generators:
                - matrix: {{generators: [{{clusters: {{}}}}, {{list: {{elements: []}}}}]}}
                - pullRequest: {{github: {{owner: argoproj, repo: argocd-example-apps}}}}
              template:
                metadata: {{name: 'pr-{{{{number}}}}'}}
                spec:
                  source: {{repoURL: '{url}', path: guestbook}}
                  destination: {{name: dev-1}}
            """,
        "bad/settings.yaml": "ui: {theme: dark}\nreplicas: 3\n",
    }


def write(repo: GitRepo, base: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        repo.write(f"{base}/{name}", textwrap.dedent(text))


def test_an_argocd_repository_imports_validates_and_syncs_as_argocd_renders_it(
        dev_fleet, workload_fleet, redis_url, helm: Path, tmp_path: Path) -> None:
    ns = f"guestbook-{uuid.uuid4().hex[:6]}"
    repo = GitRepo(tmp_path / "argocd-example-apps")
    write(repo, "guestbook", GUESTBOOK)
    chart(helm, repo.path, name="helm-guestbook", hook=False)
    repo.write("helm-guestbook/values-production.yaml", "service:\n  type: NodePort\n")
    repo.commit("guestbook, helm-guestbook")
    url = repo.bare_url()
    write(repo, "argocd", manifests(url, ns))
    kubeconfigs = {**dev_fleet.clusters, **workload_fleet.clusters}
    spec = tmp_path / "fleet.yaml"

    proc = imported("argocd", [repo.path / "argocd"], spec, kubeconfigs)

    assert proc.returncode == 1, proc.stderr                  # the bad inputs were skipped
    summary = proc.stderr
    assert "Application kustomized-helm: a config management plugin source has no " \
           "counterpart" in summary
    assert "ApplicationSet matrix: generators[0].matrix: this generator cannot be " \
           "expanded" in summary
    assert "ApplicationSet matrix: generators[1].pullRequest: this generator cannot be " \
           "expanded" in summary
    assert "bad/settings.yaml: document 1 is not a Kubernetes object" in summary
    fleet = yaml.safe_load(spec.read_text())
    assert [s.get("defaultBranch") for s in fleet["sources"]] == [True]   # targetRevision HEAD
    assert sorted(a["name"] for a in fleet["applications"]) == [
        "dev-1-guestbook", "dev-2-guestbook", "helm-guestbook"]
    environ = env(new_redis_db(redis_url), tmp_path)
    validate(spec, environ)

    for cluster in ("dev-1", "dev-2"):
        sync(spec, f"{cluster}-guestbook", cluster, environ)
        assert_live(dev_fleet.clusters[cluster], kustomize(repo.path / "guestbook"), ns)
    sync(spec, "helm-guestbook", "work-1", environ)
    values = tmp_path / "parameters.yaml"
    values.write_text("replicaCount: 2\n")
    rendered = run(helm, "template", "helm-guestbook", str(repo.path / "helm-guestbook"),
                   "--namespace", f"{ns}-helm", "-f",
                   str(repo.path / "helm-guestbook" / "values-production.yaml"),
                   "-f", str(values), "--include-crds", "--skip-tests")
    objects = documents(rendered)
    assert {o["kind"] for o in objects} >= {"Deployment", "Service", "ServiceAccount"}
    assert_live(workload_fleet.clusters["work-1"], objects, f"{ns}-helm")
