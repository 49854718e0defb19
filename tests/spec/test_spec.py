"""The fleet spec loader: a valid file becomes a Fleet, every mistake is named with its line."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Callable

import pytest

from shared.errors import SpecError
from shared.spec.model import Auth, Fleet, Selector
from shared.spec.load import load_fleet
from shared.spec.dependencies import find_cycles
from shared.spec.load import MAX_BYTES, load, validate_file
from shared.spec.scalars import parse_duration

Validate = Callable[[str], tuple["Fleet | None", list[str], list[str]]]

DESIGN_EXAMPLE = """\
sources:
  - name: platform
    url: https://git.example.com/org/gitops.git   # also ssh://, git@host:path, file://
    branch: main                 # exactly one of: branch | tag | semver | commit
    interval: 1m                 # how often to look for a new revision
    auth: {sshKeyFile: /etc/fleetsync/id_ed25519}
  - name: charts
    url: git@github.com:org/charts.git
    semver: ">=1.0.0 <2.0.0"
    interval: 30s
    auth: {usernameEnv: GIT_USER, passwordEnv: GIT_TOKEN}
clusters:
  - name: production
    kubeconfig: /etc/fleetsync/kubeconfigs/production.yaml
    context: production          # optional
    labels: {env: production, region: eu}
    vars: {replicas: "3"}        # ${cluster_name} is always defined
    interval: 1m                 # beat: reconcile this cluster this often
  - name: staging
    labels: {env: staging}
applications:
  - name: infrastructure
    source: charts
    path: infra
    clusters: {names: [production, staging]}
  - name: platform
    source: platform
    path: clusters/${cluster_name}
    clusters: {matchLabels: {env: production}}
    namespace: web
    prune: true
    wait: true
    timeout: 2m
    dependsOn: [infrastructure]
    suspend: false
"""

MINIMAL = """\
sources:
  - name: gitops
    url: https://git.example.com/gitops.git
    branch: main
clusters:
  - name: dev
    labels: {env: dev}
applications:
  - name: web
    source: gitops
    path: apps/web
    clusters: {names: [dev]}
"""


@pytest.fixture
def validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Validate:
    """Write the text to ./fleet.yaml and validate it by that relative path."""
    monkeypatch.chdir(tmp_path)

    def run(text: str) -> tuple[Fleet | None, list[str], list[str]]:
        Path("fleet.yaml").write_text(textwrap.dedent(text))
        return validate_file("fleet.yaml")
    return run


def problems(validate: Validate, text: str) -> list[str]:
    fleet, found, _ = validate(text)
    assert fleet is None
    return found


# -- a valid file -----------------------------------------------------------

def test_design_example_loads_with_its_values(validate: Validate) -> None:
    fleet, found, warnings = validate(DESIGN_EXAMPLE)
    assert found == [] and warnings == [] and fleet is not None
    platform = fleet.sources["platform"]
    assert (platform.url, platform.ref_kind, platform.ref, platform.interval) == (
        "https://git.example.com/org/gitops.git", "branch", "main", 60.0)
    assert platform.auth == Auth(ssh_key_file="/etc/fleetsync/id_ed25519")
    charts = fleet.sources["charts"]
    assert (charts.ref_kind, charts.ref, charts.interval) == ("semver", ">=1.0.0 <2.0.0", 30.0)
    assert charts.auth == Auth(username_env="GIT_USER", password_env="GIT_TOKEN")
    prod = fleet.clusters["production"]
    assert prod.kubeconfig == "/etc/fleetsync/kubeconfigs/production.yaml"
    assert prod.context == "production" and prod.labels == {"env": "production", "region": "eu"}
    assert prod.variables() == {"replicas": "3", "cluster_name": "production"}
    app = fleet.applications["platform"]
    assert app.clusters == Selector(match_labels={"env": "production"})
    assert (app.namespace, app.prune, app.wait, app.timeout, app.suspend) == ("web", True, True, 120.0, False)
    assert app.depends_on == ("infrastructure",) and app.path == "clusters/${cluster_name}"
    assert fleet.units() == [("infrastructure", "production"), ("infrastructure", "staging"),
                             ("platform", "production")]
    assert fleet.path == "fleet.yaml"


def test_defaults_and_file_order(validate: Validate) -> None:
    fleet, _, _ = validate(MINIMAL + "  - name: api\n    source: gitops\n    path: apps/api\n"
                           "    clusters: {names: [dev]}\n")
    assert fleet is not None
    assert list(fleet.applications) == ["web", "api"]
    web, dev = fleet.applications["web"], fleet.clusters["dev"]
    assert (web.prune, web.wait, web.timeout, web.suspend, web.adopt, web.allow_remote_bases) == (
        True, True, 120.0, False, False, False)
    assert web.namespace is None and web.depends_on == ()
    assert (dev.kubeconfig, dev.context, dev.interval, dev.vars) == (None, None, 60.0, {})
    assert fleet.sources["gitops"].interval == 60.0 and fleet.sources["gitops"].auth == Auth()


def test_load_fleet_delegates_and_load_raises_every_problem(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(MINIMAL)
    assert list(load_fleet(str(good)).applications) == ["web"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("branch: main", "branch: main\n    tag: v1").replace("[dev]", "[prod]"))
    with pytest.raises(SpecError) as caught:
        load(str(bad))
    assert caught.value.problems == [
        f"{bad}:2: sources[0]: give exactly one of branch, tag, semver, commit (found branch, tag)",
        f"{bad}:13: applications[0].clusters.names[0]: no cluster named 'prod'",
    ]


@pytest.mark.parametrize("url", ["https://h/x.git", "http://h:8080/x", "ssh://git@h:22/x.git",
                                 "git@github.com:org/x.git", "file:///srv/git/x", "/srv/git/x"])
def test_accepted_urls(validate: Validate, url: str) -> None:
    assert validate(MINIMAL.replace("https://git.example.com/gitops.git", url))[1] == []


def test_empty_lists_and_no_applications_are_valid(validate: Validate) -> None:
    fleet, found, _ = validate("sources: []\nclusters: []\napplications:\n")
    assert found == [] and fleet is not None and fleet.units() == []


# -- precise messages -------------------------------------------------------

def test_unknown_source_reference(validate: Validate) -> None:
    assert problems(validate, MINIMAL.replace("source: gitops", "source: gitopz")) == [
        "fleet.yaml:10: applications[0].source: no source named 'gitopz'"]


def test_unknown_keys_are_named_at_every_level(validate: Validate) -> None:
    text = MINIMAL.replace("    branch: main", "    branch: main\n    brnach: dev").replace(
        "clusters:\n", "clusterz: []\nclusters:\n", 1)
    found = problems(validate, text)
    assert found[0].startswith("fleet.yaml:5: sources[0]: unknown key 'brnach' (expected one of: name, url,")
    assert found[1].startswith("fleet.yaml:6: clusterz: unknown key 'clusterz'")
    assert len(found) == 2


def test_missing_required_keys_point_at_the_mapping(validate: Validate) -> None:
    text = "sources:\n  - name: gitops\n    branch: main\napplications:\n  - name: web\n    source: gitops\n"
    assert problems(validate, text) == [
        "fleet.yaml:2: sources[0].url: is required",
        "fleet.yaml:5: applications[0].path: is required",
        "fleet.yaml:5: applications[0].clusters: is required",
    ]


def test_duplicate_names(validate: Validate) -> None:
    text = MINIMAL.replace("clusters:\n  - name: dev\n", "clusters:\n  - name: dev\n  - name: dev\n")
    assert problems(validate, text) == [
        "fleet.yaml:7: clusters[1].name: duplicate cluster name 'dev' (first at line 6)"]


def test_duplicate_keys(validate: Validate) -> None:
    text = MINIMAL.replace("    branch: main", "    branch: main\n    branch: dev")
    assert problems(validate, text) == ["fleet.yaml:5: sources[0]: duplicate key 'branch' (first at line 4)"]


@pytest.mark.parametrize("name", ["Web", "web_1", "-web", "web-", "a" * 64, "web.app"])
def test_names_are_dns_labels(validate: Validate, name: str) -> None:
    found = problems(validate, MINIMAL.replace("name: web", f"name: {name}"))
    assert len(found) == 1 and found[0].startswith("fleet.yaml:9: applications[0].name: ")
    assert "is not a valid name" in found[0]


def test_ref_rules(validate: Validate) -> None:
    assert problems(validate, MINIMAL.replace("    branch: main\n", "")) == [
        "fleet.yaml:2: sources[0]: give exactly one of branch, tag, semver, commit"]
    assert problems(validate, MINIMAL.replace("branch: main", "commit: abc12")) == [
        "fleet.yaml:4: sources[0].commit: must be 7 to 40 hexadecimal characters"]
    assert problems(validate, MINIMAL.replace("branch: main", "commit: 1234567")) == [
        "fleet.yaml:4: sources[0].commit: must be a string, quote it"]
    assert problems(validate, MINIMAL.replace("branch: main", "semver: '>=1.0 foo'")) == [
        "fleet.yaml:4: sources[0].semver: invalid semver range '>=1.0 foo': cannot read 'foo'"]
    full_sha = "commit: 0123456789abcdef0123456789abcdef01234567"
    assert validate(MINIMAL.replace("branch: main", full_sha))[1] == []


@pytest.mark.parametrize("url, message", [
    ("ftp://h/x", "unsupported URL 'ftp://h/x'"),
    ("relative/path", "unsupported URL 'relative/path'"),
    ("https://me:s3cret@h/x.git", "must not carry a password"),
])
def test_bad_urls(validate: Validate, url: str, message: str) -> None:
    found = problems(validate, MINIMAL.replace("https://git.example.com/gitops.git", url))
    assert len(found) == 1 and found[0].startswith("fleet.yaml:3: sources[0].url: ") and message in found[0]


def test_inline_secrets_are_refused(validate: Validate) -> None:
    auth = "    auth:\n      username: bob\n      password: hunter2\n"
    text = MINIMAL.replace("    branch: main\n", "    branch: main\n" + auth)
    found = problems(validate, text)
    assert [f.split(": inline")[0] for f in found] == [
        "fleet.yaml:6: sources[0].auth.username", "fleet.yaml:7: sources[0].auth.password"]
    assert all("environment variable" in f and "hunter2" not in f for f in found)


def test_auth_forms(validate: Validate) -> None:
    def auth(text: str) -> list[str]:
        return validate(MINIMAL.replace("    branch: main\n", f"    branch: main\n    auth: {text}\n"))[1]
    assert auth("{usernameEnv: GIT_USER}") == [
        "fleet.yaml:5: sources[0].auth.passwordEnv: is required together with usernameEnv"]
    assert auth("{sshKeyFile: /k, passwordEnv: P, usernameEnv: U}") == [
        "fleet.yaml:5: sources[0].auth: give either sshKeyFile or usernameEnv with passwordEnv, not both"]
    assert auth("{}") == ["fleet.yaml:5: sources[0].auth: give sshKeyFile, or usernameEnv and passwordEnv"]
    assert auth("{usernameEnv: bob, passwordEnv: 'hunter 2'}") == [
        "fleet.yaml:5: sources[0].auth.passwordEnv: must be the name of an environment variable "
        "(letters, digits and '_'), not its value"]


def test_label_and_var_values_must_be_strings(validate: Validate) -> None:
    maps = "labels: {env: dev, tier: 1}\n    vars: {replicas: 3, 9x: a}"
    text = MINIMAL.replace("labels: {env: dev}", maps)
    assert problems(validate, text) == [
        "fleet.yaml:7: clusters[0].labels.tier: must be a string, quote it",
        "fleet.yaml:8: clusters[0].vars.replicas: must be a string, quote it",
        "fleet.yaml:8: clusters[0].vars.9x: variable names must match [A-Za-z_][A-Za-z0-9_]*",
    ]


def test_cluster_name_var_is_reserved(validate: Validate) -> None:
    found = problems(validate, MINIMAL.replace("labels: {env: dev}", "vars: {cluster_name: x}"))
    assert found == ["fleet.yaml:7: clusters[0].vars.cluster_name: "
                     "cluster_name is reserved: it is always the cluster's name"]


@pytest.mark.parametrize("path, message", [
    ("/etc/apps", "must be relative to the root of the source, not absolute"),
    ("apps/../../etc", "must not contain '..' segments"),
    ("..", "must not contain '..' segments"),
    ("apps/${cluster-name}", "bad variable reference ${cluster-name}: names are letters, digits and '_'"),
    ("apps/${cluster_name", "unterminated variable reference '${'"),
])
def test_application_path(validate: Validate, path: str, message: str) -> None:
    assert problems(validate, MINIMAL.replace("path: apps/web", f"path: '{path}'")) == [
        f"fleet.yaml:11: applications[0].path: {message}"]


def test_path_with_dots_in_names_is_fine(validate: Validate) -> None:
    assert validate(MINIMAL.replace("path: apps/web", "path: apps/web..v2/${region}"))[1] == []


def test_selector_rules(validate: Validate) -> None:
    both = "clusters: {names: [dev], matchLabels: {env: dev}}"
    assert problems(validate, MINIMAL.replace("clusters: {names: [dev]}", both)) == [
        "fleet.yaml:12: applications[0].clusters: give exactly one of names or matchLabels"]
    assert problems(validate, MINIMAL.replace("[dev]", "[dev, prod]")) == [
        "fleet.yaml:12: applications[0].clusters.names[1]: no cluster named 'prod'"]
    assert problems(validate, MINIMAL.replace("{names: [dev]}", "{matchLabels: {env: 1}}")) == [
        "fleet.yaml:12: applications[0].clusters.matchLabels.env: must be a string, quote it"]


def test_selector_that_matches_nothing_is_a_warning(validate: Validate) -> None:
    fleet, found, warnings = validate(MINIMAL.replace("{names: [dev]}", "{matchLabels: {env: prod}}"))
    assert found == [] and fleet is not None
    assert warnings == ["fleet.yaml:12: applications[0].clusters: selects no cluster"]
    assert fleet.warnings == tuple(warnings)


def test_booleans_must_be_real_booleans(validate: Validate) -> None:
    text = MINIMAL + "    prune: 'false'\n    wait: 1\n    suspend: yes\n"
    assert problems(validate, text) == [
        "fleet.yaml:13: applications[0].prune: must be true, false or adopted, not a string",
        "fleet.yaml:14: applications[0].wait: must be true or false, not a number",
    ]


def test_namespace_and_timeout(validate: Validate) -> None:
    text = MINIMAL + "    namespace: Web\n    timeout: 0s\n"
    found = problems(validate, text)
    assert found[0].startswith("fleet.yaml:13: applications[0].namespace: 'Web' is not a valid name")
    assert found[1] == "fleet.yaml:14: applications[0].timeout: duration '0s' must be greater than zero"


def test_depends_on_unknown_application(validate: Validate) -> None:
    assert problems(validate, MINIMAL + "    dependsOn: [db]\n") == [
        "fleet.yaml:13: applications[0].dependsOn[0]: no application named 'db'"]


def test_dependency_cycle_is_reported_with_its_path(validate: Validate) -> None:
    more = """\
    dependsOn: [api]
  - name: api
    source: gitops
    path: apps/api
    clusters: {names: [dev]}
    dependsOn: [db]
  - name: db
    source: gitops
    path: apps/db
    clusters: {names: [dev]}
    dependsOn: [web]
"""
    text = MINIMAL + more
    assert problems(validate, text) == [
        "fleet.yaml:13: applications[0].dependsOn: dependency cycle web -> api -> db -> web"]


def test_self_dependency_is_a_cycle(validate: Validate) -> None:
    assert problems(validate, MINIMAL + "    dependsOn: [web]\n") == [
        "fleet.yaml:13: applications[0].dependsOn: dependency cycle web -> web"]


def test_find_cycles() -> None:
    assert find_cycles({"a": ["b"], "b": ["c"], "c": []}) == []
    assert find_cycles({"a": ["b"], "b": ["a"], "c": ["a"]}) == [["a", "b", "a"]]
    chain = {str(i): [str(i + 1)] for i in range(5000)}
    assert find_cycles({**chain, "5000": ["0"]})[0][-1] == "0"


def test_sources_required_when_applications_exist(validate: Validate) -> None:
    text = MINIMAL.split("clusters:", 1)[1]
    assert problems(validate, "clusters:" + text) == [
        "fleet.yaml:1: sources: is required when applications are listed",
        "fleet.yaml:6: applications[0].source: no source named 'gitops'",
    ]


def test_top_level_must_be_a_mapping_of_lists(validate: Validate) -> None:
    assert problems(validate, "- sources\n") == ["fleet.yaml:1: must be a mapping, not a list"]
    assert problems(validate, "sources: {name: x}\n") == [
        "fleet.yaml:1: sources: must be a list, not a mapping"]


# -- the file itself --------------------------------------------------------

def test_alias_bomb_is_refused_quickly(validate: Validate) -> None:
    rows = ['a: &a ["x","x","x","x","x","x","x","x","x"]']   # the classic billion laughs
    for i in range(8):
        name, prev = chr(98 + i), chr(97 + i)
        rows.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    start = time.monotonic()
    assert problems(validate, "\n".join(rows) + "\n") == [
        "fleet.yaml:1: invalid YAML: anchors and aliases are not allowed"]
    assert time.monotonic() - start < 1.0


def test_oversized_file_is_refused(validate: Validate) -> None:
    start = time.monotonic()
    assert problems(validate, MINIMAL + "#" * MAX_BYTES + "\n") == [
        f"fleet.yaml:1: the file is larger than {MAX_BYTES} bytes; refusing to parse it"]
    assert time.monotonic() - start < 1.0


def test_syntax_error_has_its_line(validate: Validate) -> None:
    found = problems(validate, "sources:\n  - name: x\n    url: [unclosed\n")
    assert len(found) == 1 and found[0].startswith("fleet.yaml:4: invalid YAML:")


def test_empty_and_missing_files(validate: Validate) -> None:
    assert problems(validate, "") == ["fleet.yaml:1: the file is empty"]
    assert validate_file("no-such.yaml")[1] == ["no-such.yaml: cannot read: No such file or directory"]


def test_deep_nesting_is_refused(validate: Validate) -> None:
    found = problems(validate, "[" * 100_000 + "]" * 100_000 + "\n")
    assert len(found) == 1 and found[0].startswith("fleet.yaml:1: invalid YAML")


# -- durations ----------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1m30s", 90.0), ("500ms", 0.5),
    ("1h2m3s", 3723.0), ("1.5h", 5400.0), ("45", 45.0), (" 10s ", 10.0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "5 m", "5d", "-1s", "1.5", "m", "1m 30s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_duration_fields(validate: Validate) -> None:
    text = MINIMAL.replace("branch: main", "branch: main\n    interval: 90") + "    timeout: 1m30s\n"
    fleet, _, _ = validate(text)
    assert fleet is not None
    assert fleet.sources["gitops"].interval == 90.0 and fleet.applications["web"].timeout == 90.0
    assert problems(validate, MINIMAL.replace("labels: {env: dev}", "interval: soon")) == [
        "fleet.yaml:7: clusters[0].interval: invalid duration 'soon': "
        "use e.g. 30s, 5m, 1h, 1m30s, 500ms or whole seconds"]


def test_identity_policy_and_prune_adopted(validate: Validate) -> None:
    text = MINIMAL.replace("    labels: {env: dev}\n", "    labels: {env: dev}\n"
                           "    serviceAccountName: fleet\n    serviceAccountNamespace: ops\n")
    text += ("    namespace: web\n    serviceAccountName: web-deployer\n    prune: adopted\n"
             "    allowedNamespaces: [web, web-jobs]\n    allowedKinds: [apps/*, ConfigMap]\n"
             "    deniedKinds: [rbac.authorization.k8s.io/ClusterRoleBinding]\n")
    fleet, errors, _ = validate(text)
    assert errors == [] and fleet is not None
    web, dev = fleet.applications["web"], fleet.clusters["dev"]
    assert (web.service_account, dev.service_account) == ("web/web-deployer", "ops/fleet")
    assert web.prune and web.prune_adopted
    assert web.allowed_namespaces == ("web", "web-jobs")
    assert web.allowed_kinds == ("apps/*", "ConfigMap")
    assert web.denied_kinds == ("rbac.authorization.k8s.io/ClusterRoleBinding",)


def test_identity_and_policy_mistakes_are_named(validate: Validate) -> None:
    found = problems(validate, MINIMAL + "    serviceAccountName: deployer\n"
                     "    allowedKinds: [configmap]\n    prune: sometimes\n")
    assert any("applications[0].serviceAccountName: needs serviceAccountNamespace" in p
               for p in found), found
    assert any("applications[0].allowedKinds[0]: 'configmap' is not a kind" in p
               for p in found), found
    assert any("applications[0].prune: must be true, false or adopted" in p for p in found), found


def test_max_size_of_a_source(validate: Validate) -> None:
    fleet, errors, _ = validate(MINIMAL.replace("    branch: main\n", "    branch: main\n    maxSize: 500Mi\n", 1))
    assert errors == [] and fleet is not None
    assert fleet.sources["gitops"].max_size == 500 * 2**20
    found = problems(validate, MINIMAL.replace("    branch: main\n", "    branch: main\n    maxSize: lots\n", 1))
    assert any("sources[0].maxSize: must be a size such as 500Mi" in p for p in found), found


def test_drift_policy_and_ignore_rules(validate: Validate) -> None:
    fleet, errors, _ = validate(MINIMAL + "    drift: detect\n    ignoreDifferences:\n"
                                "      - {group: apps, kind: Deployment, jsonPointers: [/spec/replicas]}\n"
                                "      - {managedFields: [kube-controller-manager]}\n")
    assert errors == [] and fleet is not None
    web = fleet.applications["web"]
    assert web.drift == "detect" and len(web.ignore_differences) == 2
    assert web.ignore_differences[0].json_pointers == ("/spec/replicas",)
    assert web.ignore_differences[1].managers == ("kube-controller-manager",)
    found = problems(validate, MINIMAL + "    drift: sometimes\n    ignoreDifferences:\n"
                     "      - {jsonPointers: [spec/replicas]}\n"
                     "      - {jsonPointers: [/spec/replicas]}\n")
    assert any("applications[0].drift: must be correct or detect" in p for p in found), found
    assert any("'spec/replicas' is not a JSON pointer" in p for p in found), found
    assert any("jsonPointers need the kind" in p for p in found), found
