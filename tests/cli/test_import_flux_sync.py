"""``fleetsync import flux`` on repositories in the shape of flux2-multi-tenancy: a fleet
repository (clusters/staging with infrastructure and tenants Kustomizations, a tenant's
RBAC and sync objects) and the tenant's repository (a HelmRelease of a chart in Git, with
values and valuesFrom a generated ConfigMap), then ``fleetsync validate`` and ``fleetsync
sync --local`` on a real cluster with kwok Nodes: the cluster holds what kustomize (with
Flux's substitution) and helm render from the originals. The Flux objects the tenants'
path holds are applied as objects, as Flux would, so the cluster gets Flux's CRDs first."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import new_redis_db
from tests.support.gitutil import GitRepo
from tests.support.helmutil import chart, helm, run  # noqa: F401  (helm: a fixture)
from tests.support.importsync import (assert_live, documents, env, imported, kubectl,
                                      kustomize, sync, validate)

pytestmark = [pytest.mark.k8s]

CRDS = [("gitrepositories", "GitRepository", "source.toolkit.fluxcd.io", "v1"),
        ("kustomizations", "Kustomization", "kustomize.toolkit.fluxcd.io", "v1"),
        ("helmreleases", "HelmRelease", "helm.toolkit.fluxcd.io", "v2")]


def flux_crds() -> str:
    docs = [{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": f"{plural}.{group}"},
             "spec": {"group": group, "scope": "Namespaced",
                      "names": {"plural": plural, "kind": kind, "singular": kind.lower()},
                      "versions": [{"name": version, "served": True, "storage": True,
                                    "schema": {"openAPIV3Schema": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True}}}]}}
            for plural, kind, group, version in CRDS]
    return yaml.safe_dump_all(docs)


def fleet_files(fleet_url: str, tenant_url: str, ns: str) -> dict[str, str]:
    return {
        "clusters/staging/flux-system/gotk-sync.yaml": f"""\
            apiVersion: source.toolkit.fluxcd.io/v1
            kind: GitRepository
            metadata: {{name: flux-system, namespace: flux-system}}
            spec: {{interval: 1m0s, url: '{fleet_url}', ref: {{branch: main}}}}
            ---
            apiVersion: kustomize.toolkit.fluxcd.io/v1
            kind: Kustomization
            metadata: {{name: flux-system, namespace: flux-system}}
            spec:
              interval: 10m0s
              path: ./clusters/staging
              prune: true
              sourceRef: {{kind: GitRepository, name: flux-system}}
            """,
        "clusters/staging/flux-system/kustomization.yaml": "resources: [gotk-sync.yaml]\n",
        "clusters/staging/infrastructure.yaml": """\
            apiVersion: kustomize.toolkit.fluxcd.io/v1
            kind: Kustomization
            metadata: {name: infrastructure, namespace: flux-system}
            spec:
              interval: 10m
              sourceRef: {kind: GitRepository, name: flux-system}
              path: ./infrastructure/staging
              prune: true
              postBuild: {substitute: {cluster_env: staging}}
            """,
        "clusters/staging/tenants.yaml": """\
            apiVersion: kustomize.toolkit.fluxcd.io/v1
            kind: Kustomization
            metadata: {name: tenants, namespace: flux-system}
            spec:
              dependsOn: [{name: infrastructure}]
              interval: 5m
              sourceRef: {kind: GitRepository, name: flux-system}
              path: ./tenants/staging
              prune: true
            """,
        "infrastructure/staging/kustomization.yaml": "resources: [namespace.yaml, settings.yaml]\n",
        "infrastructure/staging/namespace.yaml": f"""\
            apiVersion: v1
            kind: Namespace
            metadata: {{name: {ns}-infra}}
            """,
        "infrastructure/staging/settings.yaml": f"""\
            apiVersion: v1
            kind: ConfigMap
            metadata: {{name: cluster-settings, namespace: {ns}-infra}}
            data: {{environment: '${{cluster_env}}'}}
            """,
        "tenants/staging/kustomization.yaml": "resources: [../base/dev-team]\n",
        "tenants/base/dev-team/kustomization.yaml": f"namespace: {ns}\n"
                                                     "resources: [rbac.yaml, sync.yaml]\n",
        "tenants/base/dev-team/rbac.yaml": f"""\
            apiVersion: v1
            kind: Namespace
            metadata: {{name: {ns}}}
            ---
            apiVersion: v1
            kind: ServiceAccount
            metadata: {{name: dev-team}}
            ---
            apiVersion: rbac.authorization.k8s.io/v1
            kind: RoleBinding
            metadata: {{name: gotk-reconciler}}
            roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}
            subjects: [{{kind: ServiceAccount, name: dev-team, namespace: {ns}}}]
            """,
        "tenants/base/dev-team/sync.yaml": f"""\
            apiVersion: source.toolkit.fluxcd.io/v1
            kind: GitRepository
            metadata: {{name: dev-team, namespace: {ns}}}
            spec: {{interval: 1m, url: '{tenant_url}', ref: {{branch: main}}}}
            ---
            apiVersion: kustomize.toolkit.fluxcd.io/v1
            kind: Kustomization
            metadata: {{name: dev-team, namespace: {ns}}}
            spec:
              interval: 5m
              serviceAccountName: dev-team
              sourceRef: {{kind: GitRepository, name: dev-team}}
              path: ./deploy/staging
              prune: true
              targetNamespace: {ns}
            """,
    }


def tenant_files(ns: str) -> dict[str, str]:
    return {
        "deploy/staging/kustomization.yaml": "resources: [../base/podinfo]\n",
        "deploy/base/podinfo/kustomization.yaml": """\
            resources: [release.yaml]
            configMapGenerator:
              - name: podinfo-values
                files: [values.yaml=values.yaml]
            generatorOptions: {disableNameSuffixHash: true}
            """,
        "deploy/base/podinfo/values.yaml": "service:\n  type: NodePort\nreplicaCount: 3\n",
        "deploy/base/podinfo/release.yaml": f"""\
            apiVersion: helm.toolkit.fluxcd.io/v2
            kind: HelmRelease
            metadata: {{name: podinfo, namespace: {ns}}}
            spec:
              interval: 5m
              chart:
                spec:
                  chart: ./charts/podinfo
                  sourceRef: {{kind: GitRepository, name: dev-team}}
              valuesFrom: [{{kind: ConfigMap, name: podinfo-values}}]
              values:
                replicaCount: 2
                podAnnotations: {{team: dev-team}}
            """,
    }


def write(repo: GitRepo, files: dict[str, str]) -> None:
    for name, text in files.items():
        repo.write(name, textwrap.dedent(text))


def test_a_flux_multi_tenancy_fleet_imports_validates_and_syncs_as_flux_renders_it(
        workload_fleet, redis_url, helm: Path, tmp_path: Path) -> None:
    ns = f"apps-{uuid.uuid4().hex[:6]}"
    kubeconfig = workload_fleet.clusters["work-1"]
    crds = tmp_path / "flux-crds.yaml"
    crds.write_text(flux_crds())
    kubectl(kubeconfig, "apply", "-f", str(crds))
    kubectl(kubeconfig, "wait", "--for=condition=established", "--timeout=120s",
            *[f"crd/{plural}.{group}" for plural, _, group, _ in CRDS])
    fleet_repo, tenant = GitRepo(tmp_path / "fleet-infra"), GitRepo(tmp_path / "dev-team")
    write(tenant, tenant_files(ns))
    (tenant.path / "charts").mkdir()
    chart(helm, tenant.path / "charts", name="podinfo", hook=False)
    tenant.commit("podinfo")
    fleet_url = fleet_repo.bare_path.resolve().as_uri()     # pushed once committed
    write(fleet_repo, fleet_files(fleet_url, tenant.bare_url(), ns))
    fleet_repo.commit("staging")
    fleet_repo.push()
    spec = tmp_path / "fleet.yaml"

    proc = imported("flux", [fleet_repo.path, tenant.path], spec, {"default": kubeconfig})

    summary = proc.stderr
    assert "rbac.yaml: Namespace" in summary and "not a Flux source or deployer" in summary
    held = [line for line in summary.splitlines() if "holds Flux objects imported here" in line]
    assert sorted(line.split(":")[0] for line in held) == [      # their paths apply them
        "application flux-system", "application tenants"]
    tenants = next(line for line in held if line.startswith("application tenants"))
    assert "sync.yaml: Kustomization dev-team" in tenants, tenants
    fleet = yaml.safe_load(spec.read_text())
    apps = {a["name"]: a for a in fleet["applications"]}
    assert sorted(apps) == ["dev-team", "flux-system", "infrastructure", "podinfo", "tenants"]
    assert apps["podinfo"]["helm"]["values"] == {"service": {"type": "NodePort"},
                                                 "replicaCount": 2,
                                                 "podAnnotations": {"team": "dev-team"}}
    assert apps["podinfo"]["namespace"] == ns and apps["podinfo"]["path"] == "charts/podinfo"
    environ = env(new_redis_db(redis_url), tmp_path)
    validate(spec, environ)

    for app in ("infrastructure", "tenants", "dev-team", "podinfo"):
        sync(spec, app, "default", environ)
    infra = [yaml.safe_load(yaml.safe_dump(o).replace("${cluster_env}", "staging"))
             for o in kustomize(fleet_repo.path / "infrastructure" / "staging")]
    assert_live(kubeconfig, infra, None)
    assert_live(kubeconfig, kustomize(fleet_repo.path / "tenants" / "staging"), None)
    assert_live(kubeconfig, kustomize(tenant.path / "deploy" / "staging"), ns)
    values = tmp_path / "values.yaml"       # Flux: valuesFrom, then spec.values over them
    values.write_text("replicaCount: 2\npodAnnotations: {team: dev-team}\n")
    rendered = documents(run(helm, "template", "podinfo", str(tenant.path / "charts" / "podinfo"),
                             "--namespace", ns, "-f",
                             str(tenant.path / "deploy/base/podinfo/values.yaml"),
                             "-f", str(values), "--include-crds", "--skip-tests"))
    assert_live(kubeconfig, rendered, ns)
    deployment = next(o for o in rendered if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2              # spec.values over valuesFrom
