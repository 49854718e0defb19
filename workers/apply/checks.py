"""The health rules of one application: the spec's custom checks, compiled once per spec.

``check`` (``workers/apply/health.py``) takes a ``HealthRules``; this module makes
it from the fleet spec. Precedence, as documented in docs/health.md: the
application's CEL checks, then the fleet's, then the fleet's Lua scripts (Argo
CD's resource customizations, inline scripts first), then the built-in kind
rules, then the generic reading. A check answers only for the kinds it names;
anything else falls through to the next.

CEL expressions and Lua scripts are compiled when a spec is first used, once per
process and spec (the spec loader compiled them once already, to report errors
with their line). Lua runs in one sandboxed LuaJIT state per spec
(``shared/health_lua.py``: no os, io, require or load; bounded instructions,
memory and time).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Mapping

from shared.health_cel import CelCheck, compile_check
from shared.health_lua import LuaScripts
from shared.spec.model import Application, HealthCheck, HealthSettings
from workers.apply.conditions import group_of
from workers.apply.verdict import DEFAULT_RULES, STATUSLESS_KINDS, Health, HealthRules, Verdict

KEPT = 256                 # (spec, application) pairs whose rules a process keeps


@dataclass(frozen=True)
class CelRule:
    """One CEL check as a custom check: a verdict for its kind, None for any other."""

    check: CelCheck
    name: str

    def __call__(self, obj: Mapping[str, Any]) -> Verdict | None:
        if not self.check.matches(obj):
            return None
        status, message = self.check.evaluate(obj)
        return Verdict(status, message, f"cel: {self.name}")

    @property
    def __name__(self) -> str:
        return f"cel: {self.name}"


@dataclass(frozen=True)
class LuaRule:
    """The fleet's Lua scripts as one custom check: the script for the object's kind."""

    scripts: LuaScripts

    def __call__(self, obj: Mapping[str, Any]) -> Verdict | None:
        kind = str(obj.get("kind") or "")
        group = group_of(obj)
        script = self.scripts.lookup(group, kind)
        if script is None:
            return None
        status, message = script.evaluate(obj)
        return Verdict(status, message, f"lua: {group}/{kind}" if group else f"lua: {kind}")

    @property
    def __name__(self) -> str:
        return "lua"


_RULES: "OrderedDict[tuple[int, int], tuple[HealthSettings, Application, HealthRules]]" = \
    OrderedDict()
_LUA: "OrderedDict[int, tuple[HealthSettings, LuaRule | None]]" = OrderedDict()


def rules_for(health: HealthSettings, app: Application) -> HealthRules:
    """The rules ``app`` is judged by under the fleet's ``health`` (kept per process)."""
    key = (id(health), id(app))
    hit = _RULES.get(key)
    if hit is not None and hit[0] is health and hit[1] is app:
        _RULES.move_to_end(key)
        return hit[2]
    rules = build(health, app)
    _RULES[key] = (health, app, rules)
    while len(_RULES) > KEPT:
        _RULES.popitem(last=False)
    return rules


def build(health: HealthSettings, app: Application | None = None) -> HealthRules:
    """The rules, compiled now (see the module doc for their order)."""
    own = app.health_checks if app else ()
    custom: list[Any] = [cel_rule(c) for c in own]
    custom += [cel_rule(c) for c in health.checks]
    lua = _lua(health)
    if lua is not None:
        custom.append(lua)
    statusless = STATUSLESS_KINDS | set(health.statusless_kinds) | \
        set(app.statusless_kinds if app else ())
    if not custom and statusless == STATUSLESS_KINDS and health == HealthSettings() and \
            (app is None or app.suspended_is == Health.SUSPENDED):
        return DEFAULT_RULES
    return HealthRules(custom=tuple(custom), load_balancer_address=health.load_balancer_address,
                       ingress_address=health.ingress_address,
                       statusless_kinds=frozenset(statusless),
                       suspended_is=Health(app.suspended_is) if app else Health.SUSPENDED)


def cel_rule(check: HealthCheck) -> CelRule:
    compiled = compile_check(check.api_version, check.kind, current=check.current,
                             in_progress=check.in_progress or None,
                             failed=check.failed or None)
    group = check.api_version.split("/")[0] if "/" in check.api_version else ""
    return CelRule(compiled, f"{group}/{check.kind}" if group else check.kind)


def _lua(health: HealthSettings) -> LuaRule | None:
    if not health.lua_dir and not health.lua_scripts:
        return None
    hit = _LUA.get(id(health))
    if hit is not None and hit[0] is health:
        return hit[1]
    rule = LuaRule(LuaScripts.from_dir(health.lua_dir or None, inline=dict(health.lua_scripts)))
    _LUA[id(health)] = (health, rule)
    while len(_LUA) > 8:            # one LuaJIT state per spec version in use
        _LUA.popitem(last=False)
    return rule
