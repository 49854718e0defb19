"""The spec's custom checks as health rules: their precedence, readings and suspended objects (pure)."""

from __future__ import annotations

from pathlib import Path

from shared.spec.model import Application, HealthCheck, HealthSettings, Selector
from workers.apply.checks import build, rules_for
from workers.apply.health import check, suspended, unhealthy
from workers.apply.refs import ref_of
from workers.apply.verdict import DEFAULT_RULES

WIDGET = {"apiVersion": "example.com/v1", "kind": "Widget",
          "metadata": {"name": "w", "namespace": "n", "generation": 1},
          "status": {"phase": "Running", "ready": False}}
PAUSED = {"apiVersion": "apps/v1", "kind": "Deployment",
          "metadata": {"name": "d", "namespace": "n", "generation": 1},
          "spec": {"replicas": 1, "paused": True},
          "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                     "readyReplicas": 1, "availableReplicas": 1}}


def cel(kind: str, current: str, failed: str = "", api_version: str = "example.com/v1"
        ) -> HealthCheck:
    return HealthCheck(api_version, kind, current=current, failed=failed)


def app(**kw) -> Application:
    return Application(name="web", source="s", path="p", clusters=Selector(), **kw)


def lua_dir(tmp_path: Path, status: str) -> str:
    script = tmp_path / "resource_customizations" / "example.com" / "Widget" / "health.lua"
    script.parent.mkdir(parents=True)
    script.write_text(f'return {{status = "{status}", message = "from lua"}}\n')
    return str(tmp_path)


def test_without_custom_checks_the_generic_reading_decides() -> None:
    assert build(HealthSettings(), app()) is DEFAULT_RULES
    assert check(WIDGET).rule.startswith("generic")


def test_lua_comes_before_the_built_in_and_generic_readings(tmp_path: Path) -> None:
    rules = build(HealthSettings(lua_dir=lua_dir(tmp_path, "Degraded")), app())
    verdict = check(WIDGET, rules)
    assert verdict == ("Degraded", "from lua") and verdict.rule == "lua: example.com/Widget"
    assert not check(PAUSED, rules).rule.startswith("lua")         # no script for it


def test_fleet_cel_comes_before_lua_and_the_applications_before_the_fleets(tmp_path: Path
                                                                          ) -> None:
    fleet = HealthSettings(checks=(cel("Widget", "status.phase == 'Running'"),),
                           lua_dir=lua_dir(tmp_path, "Degraded"))
    verdict = check(WIDGET, build(fleet, app()))
    assert verdict.status == "Healthy" and verdict.rule == "cel: example.com/Widget"
    own = app(health_checks=(cel("Widget", "status.ready", failed="!status.ready"),))
    verdict = check(WIDGET, build(fleet, own))
    assert verdict.status == "Degraded" and verdict.rule == "cel: example.com/Widget"
    assert "failed" in verdict.message


def test_a_cel_check_can_overrule_a_built_in_kind() -> None:
    rules = build(HealthSettings(checks=(cel("Deployment", "false", failed="spec.paused",
                                             api_version="apps/v1"),)), app())
    assert check(PAUSED, rules).status == "Degraded"


def test_a_cel_error_is_unknown_and_names_the_check() -> None:
    rules = build(HealthSettings(checks=(cel("Widget", "status.missing.field == 1"),)), app())
    verdict = check(WIDGET, rules)
    assert verdict.status == "Unknown" and verdict.rule == "cel: example.com/Widget"


def test_statusless_kinds_from_the_fleet_and_the_application() -> None:
    bare = {"apiVersion": "example.com/v1", "kind": "Settings", "metadata": {"name": "s"}}
    assert check(bare).status == "Progressing"
    assert check(bare, build(HealthSettings(statusless_kinds=("example.com/Settings",)),
                             app())).status == "Healthy"
    assert check(bare, build(HealthSettings(),
                             app(statusless_kinds=("example.com/Settings",)))).status == "Healthy"


def test_a_suspended_object_holds_ready_back_only_when_the_application_asks() -> None:
    objects = {ref_of(PAUSED): PAUSED}
    lenient = build(HealthSettings(), app())
    assert unhealthy(objects, lenient) == {}
    (line,) = suspended(objects, lenient)
    assert line.startswith(f"{ref_of(PAUSED)}: ") and "suspended" in line and line.endswith("]")
    strict = build(HealthSettings(), app(suspended_is="Progressing"))
    assert list(unhealthy(objects, strict)) == [ref_of(PAUSED)]
    assert suspended(objects, strict) == ()


def test_rules_are_kept_per_spec_and_application() -> None:
    fleet, own = HealthSettings(checks=(cel("Widget", "true"),)), app()
    assert rules_for(fleet, own) is rules_for(fleet, own)
    assert rules_for(HealthSettings(checks=(cel("Widget", "true"),)), own) is not \
        rules_for(fleet, own)


def test_a_settled_custom_verdict_on_a_status_of_an_older_spec_waits(tmp_path: Path) -> None:
    """A Lua script that ignores observedGeneration must neither pass a stale success
    nor halt a fix on the failure it fixes, before the controller answered."""
    rules = build(HealthSettings(lua_dir=lua_dir(tmp_path, "Degraded")), app())
    stale = {**WIDGET, "metadata": {**WIDGET["metadata"], "generation": 3},
             "status": {**WIDGET["status"], "observedGeneration": 2}}
    verdict = check(stale, rules)
    assert verdict.status == "Progressing" and verdict.rule == "lua: example.com/Widget"
    assert "not observed generation 3" in verdict.message and "Degraded: from lua" in verdict.message
    current = {**stale, "status": {**stale["status"], "observedGeneration": 3}}
    assert check(current, rules).status == "Degraded"
    assert check(WIDGET, rules).status == "Degraded"        # no observedGeneration: as written
