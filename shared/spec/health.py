"""The health keys of a fleet spec: custom checks in CEL and Lua, and the readings' defaults.

``load`` hands these nodes here and gets model values back after every problem
has been reported with its line and field:

    healthChecks:                       # fleet-wide (and per application, same shape)
      - apiVersion: cert-manager.io/v1  # Flux's healthCheckExprs: CEL over the object
        kind: Certificate
        current: status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')
        failed: status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')
        inProgress: "..."               # optional, as failed
    healthLua:                          # Argo CD's resource customizations
      dir: health/                      # <group>/<kind>/health.lua; relative to this file
      scripts:                          # inline, by group/Kind (``*`` wildcards allowed)
        argoproj.io/Rollout: |
          hs = {status = "Healthy"} ... return hs
    health:
      statuslessKinds: [example.com/Settings]   # custom kinds with no status: Healthy
      loadBalancerAddress: true         # a LoadBalancer Service waits for its address
      ingressAddress: false             # an Ingress waits for its address

and on an application ``healthChecks``, ``statuslessKinds`` and ``suspendedIs``
(``Suspended``, the default: a paused object does not hold the unit back; or
``Progressing``).

Every CEL expression is compiled here, and every Lua script parsed, so that
``fleetsync validate`` names the file, line and field of one that would fail;
the workers compile them again once per spec (``workers/apply/checks.py``).
"""

from __future__ import annotations

import os
import re

from yaml.nodes import MappingNode, Node, ScalarNode

from shared.health_cel import CelError, compile_check
from shared.health_lua import LuaError, LuaScripts
from shared.spec import yaml as y
from shared.spec.model import HealthCheck, HealthSettings
from shared.spec.yaml import Report

CHECK_KEYS = ("apiVersion", "kind", "current", "inProgress", "failed")
LUA_KEYS = ("dir", "scripts")
HEALTH_KEYS = ("statuslessKinds", "loadBalancerAddress", "ingressAddress")
SUSPENDED_IS = ("Suspended", "Progressing")
_GROUP_KIND = re.compile(r"([a-z0-9.-]+/)?[A-Z][A-Za-z0-9]*")
_PATTERN = re.compile(r"[a-z0-9.*-]*/?[A-Za-z0-9*]+")
_FIELDS = {"current": "current", "inProgress": "in_progress", "failed": "failed"}


def checks(node: Node, field: str, report: Report) -> tuple[HealthCheck, ...] | None:
    """A ``healthChecks`` list, each entry compiled (a bad expression names its field)."""
    items = y.sequence(node, field, report)
    if items is None:
        return None
    out: list[HealthCheck] = []
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        check = _check(item, f"{field}[{i}]", report)
        if check is None:
            continue
        key = (check.api_version.split("/")[0] if "/" in check.api_version else "", check.kind)
        if key in seen:
            report.error(item, f"{field}[{i}]", f"a second check for {check.api_version} "
                                                f"{check.kind} (the first is at line {seen[key]})")
            continue
        seen[key] = y.line(item)
        out.append(check)
    return tuple(out)


def _check(node: Node, field: str, report: Report) -> HealthCheck | None:
    m = y.mapping(node, field, report, CHECK_KEYS, required=("apiVersion", "kind", "current"))
    if m is None:
        return None
    api_version = m.read("apiVersion", y.string, report, "")
    kind = m.read("kind", y.string, report, "")
    exprs = {key: m.read(key, y.string, report, "") for key in _FIELDS}
    if not (api_version and kind and exprs["current"]):
        return None
    try:
        compile_check(api_version, kind, current=exprs["current"],
                      in_progress=exprs["inProgress"] or None, failed=exprs["failed"] or None)
    except CelError as exc:
        report.error(m.values.get(exc.field, node), m.at(exc.field),
                     _first_line(exc.problems[0].split(": ", 1)[-1]))
        return None
    return HealthCheck(api_version, kind, current=exprs["current"],
                       in_progress=exprs["inProgress"], failed=exprs["failed"],
                       where=f"{report.file}:{y.line(node)}")


def lua(node: Node, field: str, report: Report, base_dir: str
        ) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """``healthLua``: the scripts' directory (absolute) and the inline scripts, all parsed."""
    m = y.mapping(node, field, report, LUA_KEYS)
    if m is None:
        return None
    directory = m.read("dir", y.string, report, "")
    if directory:
        directory = os.path.normpath(os.path.join(base_dir, directory))
        if not os.path.isdir(directory):
            report.error(m.values["dir"], m.at("dir"), f"no such directory: {directory}")
            directory = ""
    no_scripts: dict[str, str] = {}
    scripts = m.read("scripts", _scripts, report, no_scripts)
    try:
        LuaScripts.from_dir(directory or None)
    except LuaError as exc:
        report.error(m.values["dir"], m.at("dir"), f"a script does not parse: {exc.problems[0]}")
        return None
    return directory, tuple(sorted(scripts.items()))


def _scripts(node: Node, field: str, report: Report) -> dict[str, str] | None:
    """Inline scripts by ``group/Kind``, each parsed: an error names its line in this file."""
    if not isinstance(node, MappingNode):
        report.error(node, field, f"must be a mapping, not {y.kind(node)}")
        return None
    out: dict[str, str] = {}
    for key, key_node, value_node in y.entries(node, field, report):
        source = y.string(value_node, f"{field}.{key}", report)
        if not _PATTERN.fullmatch(key):
            report.error(key_node, f"{field}.{key}",
                         "must be group/Kind (core kinds: Kind; * matches any part)")
        elif source is not None:
            try:
                LuaScripts.from_dir(None, inline={key: source})
            except LuaError as exc:
                block = 1 if getattr(value_node, "style", None) in ("|", ">") else 0
                at = y.line(value_node) + block + (exc.line or 1) - 1
                report.error_at(at, f"{field}.{key}: does not parse: {exc.detail}")
                continue
            out[key] = source
    return out


def settings(node: Node, field: str, report: Report) -> HealthSettings | None:
    """The ``health`` readings (checks and Lua are added by the loader)."""
    if isinstance(node, ScalarNode) and node.tag == y.NULL:
        return HealthSettings()
    m = y.mapping(node, field, report, HEALTH_KEYS)
    if m is None:
        return None
    return HealthSettings(
        statusless_kinds=m.read("statuslessKinds", kinds, report, ()),
        load_balancer_address=m.read("loadBalancerAddress", y.boolean, report, True),
        ingress_address=m.read("ingressAddress", y.boolean, report, False))


def kinds(node: Node, field: str, report: Report) -> tuple[str, ...] | None:
    """A list of ``group/Kind`` names."""
    return y.checked_list(node, field, report, lambda text: None if _GROUP_KIND.fullmatch(text)
                          else "must be group/Kind, e.g. example.com/Settings")


def suspended_is(node: Node, field: str, report: Report) -> str | None:
    return y.checked(node, field, report, lambda text: None if text in SUSPENDED_IS
                     else f"must be one of: {', '.join(SUSPENDED_IS)}")


def unused_checks(found: tuple[HealthCheck, ...], kinds_rendered: set[tuple[str, str]],
                  where: str) -> list[str]:
    """Warnings for checks of a kind that none of the rendered objects has."""
    return [f"{check.where}: {where}: no rendered object is a {check.api_version} "
            f"{check.kind}: the check is never used"
            for check in found if (_group(check.api_version), check.kind) not in kinds_rendered]


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
