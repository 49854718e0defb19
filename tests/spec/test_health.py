"""The fleet spec's health keys: CEL checks, Lua scripts and readings, read and refused by line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shared.spec.load import validate_file
from shared.spec.model import Fleet

BASE = """\
sources:
  - name: gitops
    url: https://git.example.com/gitops.git
    branch: main
clusters:
  - name: dev
applications:
  - name: web
    source: gitops
    path: apps/web
    clusters: {names: [dev]}
"""

CERT_CHECK = """\
healthChecks:
  - apiVersion: cert-manager.io/v1
    kind: Certificate
    current: status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')
    failed: status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')
"""

ROLLOUT_LUA = """\
hs = {}
if obj.status ~= nil and obj.status.phase == "Healthy" then
  hs.status = "Healthy"
  goto done
end
hs.status = "Progressing"
hs.message = "waiting"
::done::
return hs
"""


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)

    def run(text: str) -> tuple[Fleet | None, list[str], list[str]]:
        Path("fleet.yaml").write_text(BASE + textwrap.dedent(text))
        return validate_file("fleet.yaml")
    return run


def lines_of(problem: str) -> int:
    return int(problem.split(":")[1])


def test_fleet_checks_lua_and_readings_are_read(spec, tmp_path: Path) -> None:
    rollouts = tmp_path / "health" / "argoproj.io" / "Rollout"
    rollouts.mkdir(parents=True)
    (rollouts / "health.lua").write_text(ROLLOUT_LUA)
    fleet, problems, _ = spec(CERT_CHECK + textwrap.dedent("""\
        healthLua:
          dir: health
          scripts:
            example.com/Widget: |
              return {status = "Healthy"}
        health:
          statuslessKinds: [example.com/Settings]
          loadBalancerAddress: false
        """))
    assert problems == [] and fleet is not None
    health = fleet.health
    assert [(c.api_version, c.kind) for c in health.checks] == [("cert-manager.io/v1",
                                                                 "Certificate")]
    assert health.checks[0].where == "fleet.yaml:13"
    assert health.lua_dir == str(tmp_path / "health")          # relative to the spec's folder
    assert dict(health.lua_scripts) == {"example.com/Widget": 'return {status = "Healthy"}\n'}
    assert health.statusless_kinds == ("example.com/Settings",)
    assert health.load_balancer_address is False and health.ingress_address is False


def test_application_keys(spec) -> None:
    fleet, problems, _ = spec("""\
        """.replace("        ", ""))
    assert fleet is not None and fleet.applications["web"].suspended_is == "Suspended"
    text = BASE.replace("    clusters: {names: [dev]}\n", """\
    clusters: {names: [dev]}
    suspendedIs: Progressing
    statuslessKinds: [example.com/Config]
    healthChecks:
      - apiVersion: example.com/v1
        kind: Widget
        current: status.ready == true
""")
    Path("fleet.yaml").write_text(text)
    fleet, problems, _ = validate_file("fleet.yaml")
    assert problems == [] and fleet is not None
    app = fleet.applications["web"]
    assert app.suspended_is == "Progressing" and app.statusless_kinds == ("example.com/Config",)
    assert app.health_checks[0].kind == "Widget" and app.health_checks[0].current


def test_a_cel_expression_that_does_not_compile_is_named_with_its_line_and_field(spec) -> None:
    fleet, problems, _ = spec("""\
        healthChecks:
          - apiVersion: cert-manager.io/v1
            kind: Certificate
            current: "status.conditions.filter(e, e.type == 'Ready'"
            failed: status.phase == 'Failed'
          - apiVersion: example.com/v1
            kind: Widget
            current: status.ready
            inProgress: "status.phase == "
        """)
    assert fleet is None and len(problems) == 2
    assert problems[0].startswith("fleet.yaml:15: healthChecks[0].current: does not compile: ")
    assert problems[1].startswith("fleet.yaml:20: healthChecks[1].inProgress: does not compile: ")


def test_check_keys_are_required_and_checked(spec) -> None:
    fleet, problems, _ = spec("""\
        healthChecks:
          - apiVersion: cert-manager.io/v1
            kind: Certificate
          - {apiVersion: v1, kind: Pod, current: "true", healthy: "true"}
          - {apiVersion: a.io/v1, kind: A, current: "true"}
          - {apiVersion: a.io/v2, kind: A, current: "false"}
        """)
    assert fleet is None
    assert "fleet.yaml:13: healthChecks[0].current: is required" in problems
    assert any(p.startswith("fleet.yaml:15: healthChecks[1]: unknown key 'healthy'")
               for p in problems)
    assert any(p.startswith("fleet.yaml:17: healthChecks[3]: a second check for a.io/v2 A")
               for p in problems)


def test_a_lua_file_that_does_not_parse_is_named_with_its_path_and_line(spec,
                                                                         tmp_path: Path) -> None:
    broken = tmp_path / "health" / "example.com" / "Widget"
    broken.mkdir(parents=True)
    (broken / "health.lua").write_text('hs = {}\nif obj.status then\n  hs.status = "Healthy"\n')
    fleet, problems, _ = spec("""\
        healthLua: {dir: health}
        """)
    assert fleet is None and len(problems) == 1
    assert problems[0].startswith("fleet.yaml:12: healthLua.dir: a script does not parse: ")
    assert f"{broken / 'health.lua'}:" in problems[0]


def test_an_inline_lua_script_that_does_not_parse_names_its_line_in_the_spec(spec) -> None:
    fleet, problems, _ = spec("""\
        healthLua:
          scripts:
            example.com/Widget: |
              hs = {}
              hs.status = = "Healthy"
              return hs
        """)
    assert fleet is None and len(problems) == 1
    assert problems[0].startswith("fleet.yaml:16: healthLua.scripts.example.com/Widget: "
                                  "does not parse")


def test_a_missing_lua_directory_and_bad_names_are_refused(spec) -> None:
    fleet, problems, _ = spec("""\
        healthLua: {dir: nowhere, scripts: {"not a kind": "return {}"}}
        health: {statuslessKinds: [Settings-x], ingressAddress: "yes"}
        """)
    assert fleet is None
    assert any("healthLua.dir: no such directory" in p for p in problems)
    assert any("healthLua.scripts.not a kind: must be group/Kind" in p for p in problems)
    assert any("health.statuslessKinds[0]: must be group/Kind" in p for p in problems)
    assert any("health.ingressAddress: must be true or false" in p for p in problems)


def test_suspended_is_takes_two_words(spec) -> None:
    Path("fleet.yaml").write_text(BASE + "    suspendedIs: Healthy\n")
    fleet, problems, _ = validate_file("fleet.yaml")
    assert fleet is None
    assert problems == ["fleet.yaml:12: applications[0].suspendedIs: must be one of: "
                        "Suspended, Progressing"]
