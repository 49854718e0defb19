"""`fleetsync import argocd|flux`: repositories in the shape of the public examples become
a fleet spec that fleetsync's own loader accepts; bad inputs are named, the rest imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import yaml

from shared.spec.load import validate_file
from tests.conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "import", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def write(path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def loaded(spec):
    fleet, problems, _ = validate_file(str(spec), allow_local=True)
    assert not problems, problems
    return fleet


ARGO_APPSET = """\
apiVersion: argoproj.io/v1alpha1
kind: ApplicationSet
metadata: {name: guestbook, namespace: argocd}
spec:
  generators:
    - list:
        elements:
          - {cluster: engineering-dev, url: https://1.2.3.4}
          - {cluster: engineering-prod, url: https://2.4.6.8}
  template:
    metadata: {name: '{{cluster}}-guestbook'}
    spec:
      project: my-project
      source:
        repoURL: https://github.com/argoproj/argo-cd.git
        targetRevision: HEAD
        path: applicationset/examples/list-generator/guestbook/{{cluster}}
      destination: {server: '{{url}}', namespace: guestbook}
      syncPolicy: {automated: {prune: true, selfHeal: true}}
"""

ARGO_APPS = """\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: helm-guestbook, namespace: argocd}
spec:
  project: default
  source:
    repoURL: https://github.com/argoproj/argocd-example-apps.git
    targetRevision: master
    path: helm-guestbook
    helm:
      releaseName: guestbook
      valueFiles: [values-production.yaml]
      values: |
        replicaCount: 2
      parameters:
        - {name: service.type, value: LoadBalancer}
  destination: {name: production, namespace: guestbook}
  syncPolicy:
    automated: {prune: true}
    syncOptions: [CreateNamespace=true]
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: kustomize-guestbook, namespace: argocd}
spec:
  project: default
  source:
    repoURL: https://github.com/argoproj/argocd-example-apps.git
    targetRevision: master
    path: kustomize-guestbook
    kustomize: {namePrefix: prod-, images: ['gcr.io/heptio-images/ks-guestbook-demo:0.2']}
  destination: {server: 'https://kubernetes.default.svc', namespace: default}
"""

ARGO_PROJECT = """\
apiVersion: v1
kind: List
items:
  - apiVersion: argoproj.io/v1alpha1
    kind: AppProject
    metadata: {name: my-project, namespace: argocd}
    spec:
      destinations: [{namespace: guestbook, server: '*'}]
      syncWindows:
        - {kind: deny, schedule: '0 22 * * *', duration: 1h, applications: ['*'],
           timeZone: Europe/Berlin}
        - {kind: allow, schedule: '0 6 * * 1-5', duration: 12h, clusters: ['1-2-*'],
           manualSync: true}
        - {kind: deny, schedule: '0 0 * * *', duration: 1h30m, namespaces: [nowhere]}
      namespaceResourceWhitelist: [{group: apps, kind: Deployment}, {group: '', kind: Service}]
      clusterResourceBlacklist: [{group: '', kind: Namespace}]
  - apiVersion: argoproj.io/v1alpha1
    kind: Application
    metadata: {name: plugged}
    spec:
      source: {repoURL: https://example.com/r.git, path: ., plugin: {name: cdk8s}}
      destination: {name: production}
"""


def test_argocd_repository(tmp_path):
    repo = tmp_path / "argocd"
    write(repo / "appsets" / "guestbook.yaml", ARGO_APPSET)
    write(repo / "apps" / "apps.yaml", ARGO_APPS)
    write(repo / "projects.yaml", ARGO_PROJECT)
    write(repo / "broken.yaml", "kind: [unclosed\n")
    write(repo / "notes.yaml", "just: a config file\n")
    out = tmp_path / "fleet.yaml"
    proc = run("argocd", str(repo), "-o", str(out))
    assert proc.returncode == 1, proc.stderr      # three inputs were skipped
    assert "broken.yaml: does not parse as YAML" in proc.stderr
    assert "notes.yaml: document 1 is not a Kubernetes object" in proc.stderr
    assert "Application plugged: a config management plugin source" in proc.stderr
    fleet = loaded(out)
    assert sorted(fleet.clusters) == ["1-2-3-4", "2-4-6-8", "in-cluster", "production"]
    apps = fleet.applications
    assert sorted(apps) == ["engineering-dev-guestbook", "engineering-prod-guestbook",
                            "helm-guestbook", "kustomize-guestbook"]
    dev = apps["engineering-dev-guestbook"]
    assert dev.path == "applicationset/examples/list-generator/guestbook/engineering-dev"
    assert dev.clusters.names == ("1-2-3-4",) and dev.drift == "correct" and dev.prune
    assert dev.allowed_namespaces == ("guestbook",)
    assert dev.allowed_kinds == ("apps/Deployment", "core/Service")
    assert dev.denied_kinds == ("core/Namespace",)
    nightly, weekdays = fleet.windows
    assert (nightly.name, nightly.kind) == ("my-project-0", "deny")
    assert nightly.time_zone == "Europe/Berlin"
    assert nightly.applications.names == ("engineering-dev-guestbook", "engineering-prod-guestbook")
    assert nightly.duration == 3600
    assert (weekdays.name, weekdays.kind, weekdays.manual_sync) == ("my-project-1", "allow", True)
    assert weekdays.clusters.names == ("1-2-3-4",)
    assert "syncWindows[2]: matches none of the imported applications" in proc.stderr
    helm = apps["helm-guestbook"]
    assert helm.helm.release_name == "guestbook"
    assert dict(helm.helm.values) == {"replicaCount": 2, "service": {"type": "LoadBalancer"}}
    assert helm.helm.values_files == ("helm-guestbook/values-production.yaml",)
    assert helm.create_namespace and helm.namespace == "guestbook"
    kustomize = apps["kustomize-guestbook"]
    assert kustomize.drift == "detect" and not kustomize.prune
    text = out.read_text()
    assert "# " in text and "kustomize.namePrefix has no counterpart" in text
    sources = {s.url: s for s in fleet.sources.values()}
    assert sources["https://github.com/argoproj/argo-cd.git"].ref_kind == "default"
    assert sources["https://github.com/argoproj/argocd-example-apps.git"].ref == "master"
    assert "fill kubeconfig" in text


def test_argocd_git_directories_and_clusters_generators(tmp_path):
    repo = tmp_path / "cluster-addons"
    for name in ("argo-workflows", "prometheus-operator", "excluded"):
        (repo / "addons" / name).mkdir(parents=True)
    write(tmp_path / "in" / "appsets.yaml", f"""\
        apiVersion: argoproj.io/v1alpha1
        kind: ApplicationSet
        metadata: {{name: cluster-addons}}
        spec:
          goTemplate: true
          generators:
            - git:
                repoURL: {repo}
                revision: HEAD
                directories: [{{path: 'addons/*'}}, {{path: addons/excluded, exclude: true}}]
            - git:
                repoURL: https://github.com/argoproj/argo-cd.git
                directories: [{{path: 'addons/*'}}]
          template:
            metadata: {{name: '{{{{.path.basename}}}}'}}
            spec:
              source: {{repoURL: '{repo}', targetRevision: HEAD, path: '{{{{.path.path}}}}'}}
              destination: {{name: production, namespace: '{{{{.path.basename}}}}'}}
              syncPolicy: {{automated: {{}}}}
        ---
        apiVersion: argoproj.io/v1alpha1
        kind: ApplicationSet
        metadata: {{name: guestbook}}
        spec:
          generators:
            - clusters: {{selector: {{matchLabels: {{env: staging}}}}}}
          template:
            metadata: {{name: '{{{{name}}}}-guestbook'}}
            spec:
              source: {{repoURL: '{repo}', targetRevision: main, path: 'guestbook/{{{{name}}}}'}}
              destination: {{server: '{{{{server}}}}', namespace: guestbook}}
        ---
        apiVersion: v1
        kind: Secret
        metadata:
          name: staging-cluster
          labels: {{argocd.argoproj.io/secret-type: cluster, env: staging}}
        stringData: {{name: staging, server: https://staging.example.com}}
        """)
    out = tmp_path / "fleet.yaml"
    proc = run("argocd", str(tmp_path / "in"), "-o", str(out))
    assert proc.returncode == 1
    assert "generators[1].git: repoURL 'https://github.com/argoproj/argo-cd.git' is not a " \
           "local directory" in proc.stderr
    fleet = loaded(out)
    apps = fleet.applications
    assert sorted(apps) == ["argo-workflows", "guestbook", "prometheus-operator"]
    assert apps["argo-workflows"].path == "addons/argo-workflows"
    assert apps["argo-workflows"].namespace == "argo-workflows"
    assert apps["guestbook"].path == "guestbook/${cluster_name}"
    assert apps["guestbook"].clusters.match_labels == {"env": "staging"}
    assert fleet.units()[-1] == ("guestbook", "staging")


FLUX_SOURCES = """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: flux-system, namespace: flux-system}
spec:
  interval: 1m0s
  url: https://github.com/fluxcd/flux2-multi-tenancy
  ref: {branch: main}
  secretRef: {name: flux-system}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata: {name: podinfo, namespace: apps}
spec: {interval: 5m, url: https://stefanprodan.github.io/podinfo}
"""

FLUX_KUSTOMIZATIONS = """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: infrastructure, namespace: flux-system}
spec:
  interval: 10m
  sourceRef: {kind: GitRepository, name: flux-system}
  path: ./infrastructure
  prune: true
  wait: true
  timeout: 5m
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: tenants, namespace: flux-system}
spec:
  dependsOn: [{name: infrastructure}]
  interval: 5m
  sourceRef: {kind: GitRepository, name: flux-system}
  path: ./tenants/staging
  prune: true
  targetNamespace: apps
  serviceAccountName: kustomize-controller
  healthChecks: [{apiVersion: apps/v1, kind: Deployment, name: podinfo, namespace: apps}]
  postBuild:
    substitute: {cluster_env: staging, replicas: "2"}
  patches: [{patch: '[]', target: {kind: Deployment}}]
"""

FLUX_RELEASE = """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, namespace: apps}
spec:
  releaseName: podinfo
  chart:
    spec:
      chart: podinfo
      version: ">=6.0.0"
      sourceRef: {kind: HelmRepository, name: podinfo}
  interval: 50m
  install: {remediation: {retries: 3}}
  values:
    ingress: {enabled: true, hosts: [{host: podinfo.staging}]}
"""


def test_flux_multi_tenancy(tmp_path):
    repo = tmp_path / "flux2-multi-tenancy"
    write(repo / "clusters" / "staging" / "flux-system" / "gotk-sync.yaml", FLUX_SOURCES)
    write(repo / "clusters" / "staging" / "infrastructure.yaml", FLUX_KUSTOMIZATIONS)
    write(repo / "tenants" / "base" / "podinfo-release.yaml", FLUX_RELEASE)
    write(repo / "tenants" / "base" / "kustomization.yaml", """\
        apiVersion: kustomize.config.k8s.io/v1beta1
        kind: Kustomization
        resources: [podinfo-release.yaml]
        """)
    out = tmp_path / "fleet.yaml"
    proc = run("flux", str(repo), "-o", str(out))
    assert "kustomize.config.k8s.io" not in proc.stderr
    assert "Kustomization : not a Flux source or deployer" in proc.stderr
    assert proc.returncode == 1    # the kustomize kustomization.yaml is named, not imported
    fleet = loaded(out)
    assert list(fleet.clusters) == ["default"]
    assert dict(fleet.clusters["default"].vars) == {"cluster_env": "staging", "replicas": "2"}
    assert fleet.sources["flux-system"].ref == "main"
    assert fleet.sources["podinfo"].helm_repository
    infra, tenants, podinfo = (fleet.applications[n] for n in ("infrastructure", "tenants",
                                                               "podinfo"))
    assert infra.path == "infrastructure" and infra.prune and infra.wait and infra.timeout == 300
    assert infra.on_removal == "prune"            # Flux prunes a deleted Kustomization's objects
    assert podinfo.on_removal == "prune"          # and uninstalls a deleted HelmRelease
    assert fleet.clusters["default"].interval == 300    # the shortest: tenants' 5m
    assert tenants.depends_on == ("infrastructure",) and tenants.namespace == "apps"
    assert tenants.service_account == "flux-system/kustomize-controller"
    assert podinfo.chart is not None and podinfo.chart.version == ">=6.0.0"
    assert podinfo.helm.values["ingress"]["enabled"] is True
    assert podinfo.helm.release_name == "podinfo"
    text = out.read_text()
    assert "spec.patches has no counterpart" in text and "spec.install.remediation has no counterpart" in text
    assert "healthChecks Deployment podinfo" in proc.stderr
    assert "secretRef 'flux-system'" in text


def test_flux_all_imported_exits_zero(tmp_path):
    write(tmp_path / "sync.yaml", FLUX_SOURCES + "---\n" + FLUX_KUSTOMIZATIONS.split("---")[0])
    proc = run("flux", str(tmp_path / "sync.yaml"))
    assert proc.returncode == 0, proc.stderr
    spec = yaml.safe_load(proc.stdout)
    assert [a["name"] for a in spec["applications"]] == ["infrastructure"]
    assert "0 input(s) skipped" in proc.stderr


def test_flux_source_not_among_inputs_is_a_named_placeholder(tmp_path):
    write(tmp_path / "release.yaml", """\
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata: {name: podinfo, namespace: apps}
        spec:
          chart: {spec: {chart: podinfo, sourceRef: {kind: HelmRepository, name: charts}}}
        """)
    out = tmp_path / "fleet.yaml"
    proc = run("flux", str(tmp_path / "release.yaml"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "source 'charts' is a placeholder" in proc.stderr
    fleet = loaded(out)
    assert fleet.sources["charts"].url == "https://replace-me.invalid/charts"
    assert fleet.applications["podinfo"].chart.version == "*"


def test_a_malformed_object_is_named_and_the_rest_imported(tmp_path):
    write(tmp_path / "apps.yaml", """\
        apiVersion: argoproj.io/v1alpha1
        kind: Application
        metadata: {name: odd}
        spec: {source: {repoURL: https://e.com/r.git, helm: just-a-string}, destination: {}}
        ---
        apiVersion: argoproj.io/v1alpha1
        kind: ApplicationSet
        metadata: {name: gen}
        spec: {generators: [{matrix: {generators: []}}], template: {}}
        ---
        apiVersion: argoproj.io/v1alpha1
        kind: Application
        metadata: {name: fine}
        spec:
          source: {repoURL: https://e.com/r.git, targetRevision: v1.2.0, path: ./deploy}
          destination: {name: prod}
          syncPolicy: {automated: {prune: true, selfHeal: true}}
        """)
    out = tmp_path / "fleet.yaml"
    proc = run("argocd", str(tmp_path), "-o", str(out))
    assert proc.returncode == 1
    assert "Application odd: malformed" in proc.stderr
    assert "ApplicationSet gen: generators[0].matrix: this generator cannot be expanded" \
        in proc.stderr
    fleet = loaded(out)
    assert list(fleet.applications) == ["fine"]
    assert fleet.applications["fine"].path == "deploy"
    assert next(iter(fleet.sources.values())).ref_kind == "tag"


def test_flux_refs_oci_and_values_from(tmp_path):
    write(tmp_path / "sources.yaml", """\
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: GitRepository
        metadata: {name: no-ref, namespace: apps}
        spec: {url: https://e.com/a.git}
        ---
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: GitRepository
        metadata: {name: by-name, namespace: apps}
        spec: {url: https://e.com/b.git, ref: {name: refs/tags/v1.2.0, branch: main}}
        ---
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: GitRepository
        metadata: {name: pull, namespace: apps}
        spec: {url: https://e.com/c.git, ref: {name: refs/pull/7/head}}
        ---
        apiVersion: source.toolkit.fluxcd.io/v1beta2
        kind: OCIRepository
        metadata: {name: manifests, namespace: apps}
        spec: {url: oci://ghcr.io/org/manifests, ref: {tag: latest}}
        ---
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata: {name: from-oci, namespace: apps}
        spec: {sourceRef: {kind: OCIRepository, name: manifests}, path: ./}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: web-values, namespace: apps}
        data:
          values.yaml: |
            replicaCount: 5
            image: {tag: "1.0"}
          host: web.example.com
        ---
        apiVersion: helm.toolkit.fluxcd.io/v2
        kind: HelmRelease
        metadata: {name: web, namespace: apps}
        spec:
          targetNamespace: web
          install: {createNamespace: true, timeout: 5m}
          chart: {spec: {chart: ./charts/web, sourceRef: {kind: GitRepository, name: no-ref}}}
          valuesFrom:
            - {kind: ConfigMap, name: web-values}
            - {kind: ConfigMap, name: web-values, valuesKey: host, targetPath: ingress.host}
            - {kind: Secret, name: web-secret-values}
            - {kind: ConfigMap, name: absent, optional: true}
            - {kind: ConfigMap, name: missing}
          values: {replicaCount: 2}
        """)
    out = tmp_path / "fleet.yaml"
    proc = run("flux", str(tmp_path / "sources.yaml"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr          # the ConfigMap was read, not skipped
    fleet = loaded(out)
    sources = fleet.sources
    assert sources["no-ref"].ref == "master"
    assert "no spec.ref: Flux's default, the branch master" in proc.stderr
    assert (sources["by-name"].ref_kind, sources["by-name"].ref) == ("tag", "v1.2.0")
    assert "ref.name 'refs/pull/7/head'" in proc.stderr
    assert (sources["manifests"].url, sources["manifests"].ref_kind, sources["manifests"].ref) \
        == ("oci://ghcr.io/org/manifests", "tag", "latest")
    assert sources["manifests"].oci_artifact
    assert fleet.applications["from-oci"].source == "manifests"
    web = fleet.applications["web"]
    assert web.namespace == "web" and web.create_namespace and web.path == "charts/web"
    assert web.helm.release_name == "web-web"            # Flux: [targetNamespace-]name
    assert dict(web.helm.values) == {"replicaCount": 2, "image": {"tag": "1.0"},
                                     "ingress": {"host": "web.example.com"}}
    assert "valuesFrom[2] Secret 'web-secret-values': values from a Secret are never " \
           "copied" in proc.stderr
    assert "valuesFrom[4] ConfigMap 'missing' is not among the inputs" in proc.stderr
    assert "'absent'" not in proc.stderr
    assert "spec.install.timeout has no counterpart" in proc.stderr


def test_flux_oci_repository_becomes_an_oci_source(tmp_path):
    digest = "sha256:" + "c" * 64
    write(tmp_path / "oci.yaml", f"""\
        apiVersion: source.toolkit.fluxcd.io/v1beta2
        kind: OCIRepository
        metadata: {{name: config, namespace: apps}}
        spec:
          url: oci://registry.example.com/fleet/config
          interval: 5m
          ref: {{digest: "{digest}", semver: ">=1.0.0", tag: latest}}
          layerSelector: {{mediaType: application/vnd.cncf.flux.content.v1.tar+gzip,
                          operation: extract}}
          verify: {{provider: cosign, secretRef: {{name: cosign-pub}}}}
          secretRef: {{name: registry-login}}
        ---
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata: {{name: config, namespace: apps}}
        spec: {{sourceRef: {{kind: OCIRepository, name: config}}, path: ./apps}}
        """)
    out = tmp_path / "fleet.yaml"
    proc = run("flux", str(tmp_path / "oci.yaml"), "-o", str(out))
    source = loaded(out).sources["config"]
    assert (source.url, source.ref_kind, source.ref, source.interval) == (
        "oci://registry.example.com/fleet/config", "digest", digest, 300.0)
    assert source.oci.media_type == "application/vnd.cncf.flux.content.v1.tar+gzip"
    assert "set verify: {cosign: {publicKey: FILE}} with the key of secretRef 'cosign-pub'" \
        in proc.stderr
    assert "secretRef 'registry-login': set auth" in proc.stderr


def test_argocd_default_branch_and_typed_parameters(tmp_path):
    write(tmp_path / "app.yaml", """\
        apiVersion: argoproj.io/v1alpha1
        kind: Application
        metadata: {name: web, finalizers: [resources-finalizer.argocd.argoproj.io/background]}
        spec:
          revisionHistoryLimit: 3
          source:
            repoURL: https://e.com/r.git
            path: chart
            helm:
              parameters:
                - {name: replicaCount, value: "2"}
                - {name: ingress.enabled, value: "false"}
                - {name: image.tag, value: "0123"}
                - {name: podLabels.build, value: "42", forceString: true}
          destination: {name: prod, namespace: web}
          syncPolicy: {automated: {allowEmpty: true}, syncOptions: [ServerSideApply=true]}
        """)
    out = tmp_path / "fleet.yaml"
    proc = run("argocd", str(tmp_path / "app.yaml"), "-o", str(out))
    assert "spec.revisionHistoryLimit has no counterpart" in proc.stderr
    assert "syncOption ServerSideApply=true: fleetsync always applies server-side" in proc.stderr
    assert proc.returncode == 0, proc.stderr
    fleet = loaded(out)
    assert next(iter(fleet.sources.values())).ref_kind == "default"   # no targetRevision
    assert "defaultBranch: true" in out.read_text()
    assert dict(fleet.applications["web"].helm.values) == {
        "replicaCount": 2, "ingress": {"enabled": False}, "image": {"tag": "0123"},
        "podLabels": {"build": "42"}}
    web = fleet.applications["web"]
    assert web.on_removal == "prune" and web.allow_empty     # the finalizer; allowEmpty
