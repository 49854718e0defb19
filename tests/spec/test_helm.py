"""The Helm keys of the fleet spec: helmRepository sources, chart and helm on applications,
each problem reported with file, line and field (no helm binary needed)."""

from __future__ import annotations

from pathlib import Path

from shared.spec.model import HELM_REPOSITORY, Chart, ClusterValues, Helm, Selector
from shared.spec.load import load, validate_file

GOOD = """sources:
  - name: charts
    helmRepository: https://charts.example.com
    interval: 10m
    auth: {usernameEnv: CHARTS_USER, passwordEnv: CHARTS_TOKEN}
  - name: gitops
    url: https://git.example.com/org/gitops.git
    branch: main
clusters:
  - name: prod
    labels: {env: prod}
    vars: {replicas: "3"}
applications:
  - name: ingress
    source: charts
    chart: {name: ingress-nginx, version: "4.11.x"}
    namespace: ingress-nginx
    clusters: {names: [prod]}
    helm:
      releaseName: ingress
      values: {controller: {replicaCount: "${replicas}"}}
      valuesByCluster:
        - clusters: {matchLabels: {env: prod}}
          values: {controller: {service: {type: LoadBalancer}}}
  - name: web
    source: gitops
    path: charts/web
    clusters: {names: [prod]}
    helm: {values: {replicaCount: 2}, valuesFiles: [values/prod.yaml]}
  - name: shop
    source: gitops
    path: shop
    clusters: {names: [prod]}
    allowHelmCharts: true
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return str(path)


def test_the_issue_example_loads(tmp_path: Path) -> None:
    fleet = load(write(tmp_path, GOOD))
    charts = fleet.sources["charts"]
    assert charts.helm_repository and charts.ref_kind == HELM_REPOSITORY
    assert charts.url == "https://charts.example.com" and charts.interval == 600
    ingress = fleet.applications["ingress"]
    assert ingress.chart == Chart("ingress-nginx", "4.11.x") and ingress.path == ""
    assert ingress.helm == Helm("ingress", {"controller": {"replicaCount": "${replicas}"}}, (), (
        ClusterValues(Selector(match_labels={"env": "prod"}),
                      {"controller": {"service": {"type": "LoadBalancer"}}}),))
    assert fleet.applications["web"].helm.values_files == ("values/prod.yaml",)
    assert fleet.applications["shop"].allow_helm_charts
    assert not fleet.sources["gitops"].helm_repository


BAD = """sources:
  - name: charts
    helmRepository: http://user:pw@charts.example.com
    branch: main
  - name: oci
    helmRepository: ftp://charts.example.com
  - name: gitops
    url: https://git.example.com/org/gitops.git
    branch: main
clusters:
  - name: prod
applications:
  - name: a
    source: charts
    path: charts/a
    clusters: {names: [prod]}
    helm: {values: [1], valuesFiles: [a.yaml], releaseName: Bad_Name}
  - name: b
    source: gitops
    chart: {name: b, version: "not a version"}
    clusters: {names: [prod]}
    helm: {valuesFiles: [/etc/passwd], valuesByCluster: [{clusters: {names: [nope]}, values: {}}]}
"""


def test_every_problem_is_named_with_its_line_and_field(tmp_path: Path) -> None:
    fleet, problems, _ = validate_file(write(tmp_path, BAD))
    assert fleet is None
    text = "\n".join(problems)
    for expected in (
        "fleet.yaml:3: sources[0].helmRepository: must not carry credentials",
        "fleet.yaml:4: sources[0].branch: does not apply to a helmRepository source",
        "fleet.yaml:6: sources[1].helmRepository: unsupported Helm repository 'ftp://",
        "fleet.yaml:13: applications[0].chart: is required with a helmRepository source",
        "fleet.yaml:15: applications[0].path: does not apply to a helmRepository source",
        "fleet.yaml:17: applications[0].helm.values: must be a mapping of Helm values, not a list",
        "fleet.yaml:17: applications[0].helm.releaseName: 'Bad_Name' is not a release name",
        "fleet.yaml:17: applications[0].helm.valuesFiles: applies to Git sources only",
        "fleet.yaml:20: applications[1].chart: applies to helmRepository sources only",
        "fleet.yaml:20: applications[1].chart.version: invalid semver range 'not a version'",
        "fleet.yaml:22: applications[1].helm.valuesFiles[0]: must be relative to the root",
        "fleet.yaml:22: applications[1].helm.valuesByCluster[0].clusters.names[0]: no cluster "
        "named 'nope'",
    ):
        assert expected in text, f"{expected}\nnot in\n{text}"


def test_plain_http_repositories_warn_without_insecure(tmp_path: Path) -> None:
    text = ("sources:\n  - name: charts\n    helmRepository: http://charts.lab\n"
            "  - name: lab\n    helmRepository: http://charts.lab/b\n    insecure: true\n")
    fleet, problems, warnings = validate_file(write(tmp_path, text))
    assert problems == [] and fleet is not None
    assert [w.split("/fleet.yaml:", 1)[1] for w in warnings] == [
        "3: sources[0].helmRepository: plain http:// is refused unless the source "
        "sets insecure: true"]


OCI = """sources:
  - name: good
    helmRepository: oci://ghcr.io/org/charts
    auth: {usernameEnv: GHCR_USER, passwordEnv: GHCR_TOKEN}
  - name: lab
    helmRepository: oci://registry.lab:5000/charts
    insecure: true
  - name: leaky
    helmRepository: oci://registry.lab:5000/charts
    insecure: true
    auth: {usernameEnv: REG_USER, passwordEnv: REG_PASS}
  - name: tagged
    helmRepository: oci://ghcr.io/org/charts:1.0
  - name: upper
    helmRepository: oci://ghcr.io/Org/Charts
  - name: nohost
    helmRepository: oci:///charts
  - name: ssh
    helmRepository: oci://ghcr.io/org
    knownHosts: /etc/ssh/known_hosts
clusters:
  - name: prod
applications:
  - name: a
    source: good
    chart: {name: Web, version: "1.x"}
    clusters: {names: [prod]}
"""


def test_oci_sources_are_refused_as_the_fetch_would(tmp_path: Path) -> None:
    fleet, problems, _ = validate_file(write(tmp_path, OCI))
    assert fleet is None
    text = "\n".join(problems)
    for expected in (
        "fleet.yaml:11: sources[2].auth: credentials are never sent over plain HTTP: insecure: "
        "true on an oci:// source means plain HTTP to the registry",
        "fleet.yaml:13: sources[3].helmRepository: 'oci://ghcr.io/org/charts:1.0': a tag or "
        "digest does not go in the URL",
        "fleet.yaml:15: sources[4].helmRepository: 'oci://ghcr.io/Org/Charts': 'Org/Charts' is "
        "not a repository path",
        "fleet.yaml:17: sources[5].helmRepository: 'oci:///charts': no registry host",
        "fleet.yaml:20: sources[6].knownHosts: applies to ssh sources only",
        "fleet.yaml:26: applications[0].chart.name: 'Web' is not a repository name in an OCI "
        "registry",
    ):
        assert expected in text, f"{expected}\nnot in\n{text}"
    assert not any("sources[0]" in p or "sources[1]" in p for p in problems), problems


def test_an_oci_source_with_plain_http_loads(tmp_path: Path) -> None:
    text = ("sources:\n  - name: lab\n    helmRepository: oci://127.0.0.1:5000/charts\n"
            "    insecure: true\n")
    fleet, problems, warnings = validate_file(write(tmp_path, text))
    assert problems == [] and warnings == [] and fleet is not None
    assert fleet.sources["lab"].insecure and fleet.sources["lab"].helm_repository


def test_token_realm_is_an_https_origin_for_oci_sources_with_an_account(tmp_path: Path) -> None:
    text = """sources:
  - name: gitlab
    helmRepository: oci://registry.corp.example/group/charts
    auth: {usernameEnv: U, passwordEnv: P, tokenRealm: "https://gitlab.corp.example"}
  - name: plain
    helmRepository: oci://registry.corp.example/group/charts
    auth: {tokenRealm: "https://gitlab.corp.example"}
  - name: notls
    helmRepository: oci://registry.corp.example/group/charts
    auth: {usernameEnv: U, passwordEnv: P, tokenRealm: "http://gitlab.corp.example"}
  - name: https
    helmRepository: https://charts.example
    auth: {usernameEnv: U, passwordEnv: P, tokenRealm: "https://gitlab.corp.example"}
"""
    fleet, problems, _ = validate_file(write(tmp_path, text))
    found = "\n".join(problems)
    for expected in (
        "fleet.yaml:7: sources[1].auth.tokenRealm: is the token service trusted with "
        "usernameEnv/passwordEnv: give those too",
        "fleet.yaml:10: sources[2].auth.tokenRealm: 'http://gitlab.corp.example' is not an "
        "https:// URL of a token service",
        "fleet.yaml:13: sources[3].auth.tokenRealm: applies to oci:// sources only",
    ):
        assert expected in found, f"{expected}\nnot in\n{found}"
    assert not any("sources[0]" in p for p in problems), problems
