"""``fleetsync health [-f FLEET] [--app APP] [--lua-dir DIR] FILE...``: verdicts of objects on disk.

For people writing and testing health checks: it reads Kubernetes objects from
YAML or JSON files (one or many documents, a ``kind: List``, ``-`` for stdin)
and prints, per object, the verdict, the rule that decided and the message. It
goes through exactly the workers' code path: ``workers.apply.checks`` builds the
rules from the fleet spec (its CEL checks and Lua scripts, the application's
when ``--app`` is given), ``workers.apply.health.check`` decides. It reads no
cluster and needs no Redis. (A workload's Pods are not listed, so the Pod
diagnosis that a sync adds to a workload short of replicas is not shown.)

``scheduler.commands.health`` starts ``python -m workers.health_cli`` with the
user's arguments, so the scheduler side never imports worker code. Exit code 0
when every object was judged, 1 on bad input (named with its file and document).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from typing import Any, Iterator, Mapping

from shared.errors import FleetsyncError, RenderError
from shared.health_lua import LuaScripts
from shared.spec.load import load_fleet
from shared.spec.model import Application, HealthSettings
from shared.yamlsafe import load_documents
from workers.apply.checks import build
from workers.apply.health import check
from workers.apply.verdict import HealthRules

MAX_BYTES = 32 * 1024 * 1024


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetsync health")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("-f", "--file", dest="fleet")
    parser.add_argument("--app")
    parser.add_argument("--lua-dir")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    return parser.parse_args(argv)


def rules(args: argparse.Namespace) -> HealthRules:
    """The rules a worker would judge these objects by (see the module doc)."""
    if args.app and not args.fleet:
        raise FleetsyncError("--app needs the fleet spec: pass -f FILE")
    health, app = HealthSettings(), None
    if args.fleet:
        fleet = load_fleet(args.fleet)
        health = fleet.health
        if args.app:
            app = _application(fleet.applications, args.app, args.fleet)
    if args.lua_dir:
        if not os.path.isdir(args.lua_dir):
            raise FleetsyncError(f"--lua-dir {args.lua_dir}: no such directory")
        LuaScripts.from_dir(args.lua_dir)           # a script that does not parse: named
        health = replace(health, lua_dir=os.path.abspath(args.lua_dir))
    return build(health, app)


def _application(apps: Mapping[str, Application], name: str, path: str) -> Application:
    if name not in apps:
        raise FleetsyncError(f"no application named {name!r} in {path}")
    return apps[name]


def objects(paths: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, object)`` for every object in the files, in order; ``kind: List`` unrolled."""
    for path in paths:
        text = _read(path)
        for line, doc in load_documents(text, path):
            where = f"{path}:{line}"
            if not isinstance(doc, dict):
                raise RenderError(f"{where}: not a Kubernetes object (a {type(doc).__name__})")
            if doc.get("kind") == "List" or str(doc.get("kind", "")).endswith("List") \
                    and isinstance(doc.get("items"), list):
                for i, item in enumerate(doc.get("items") or []):
                    yield _object(item, f"{where}: items[{i}]")
            else:
                yield _object(doc, where)


def _read(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read(MAX_BYTES + 1)[:MAX_BYTES + 1]
        with open(path, encoding="utf-8") as f:
            return f.read(MAX_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetsyncError(f"{path}: cannot read: {exc}") from exc


def _object(doc: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
        raise RenderError(f"{where}: not a Kubernetes object (no apiVersion and kind)")
    return where, doc


def judge(args: argparse.Namespace) -> list[dict[str, str]]:
    found = rules(args)
    out = []
    for _, obj in objects(args.files):
        meta = obj.get("metadata") or {}
        verdict = check(obj, found)
        out.append({"apiVersion": str(obj["apiVersion"]), "kind": str(obj["kind"]),
                    "namespace": str(meta.get("namespace") or ""),
                    "name": str(meta.get("name") or ""), "verdict": str(verdict.status),
                    "rule": verdict.rule, "message": verdict.message})
    return out


def table(rows: list[dict[str, str]]) -> str:
    lines = []
    for row in rows:
        name = f"{row['namespace']}/{row['name']}" if row["namespace"] else row["name"]
        lines.append(f"{row['kind']}/{name}: {row['verdict']} [{row['rule']}]"
                     + (f": {row['message']}" if row["message"] else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        rows = judge(args)
    except FleetsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.output == "json" else table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
