"""``fleetsync images status`` and ``fleetsync images scan [POLICY...] [--local]``.

``status`` reads Redis only (``scheduler.images_view``): each policy's latest tag,
digest, why and when (or its error), what Git has at the head of each source with
``imageUpdates`` for its markers, which clusters run which tag, and each source's
last commit. ``scan`` enqueues ``fleetsync.scan_images`` with the policies' names
(all of the spec's when none is given), forced: the policies are read from their
registries now, and waits for its result by default, printing what each policy chose
and the commit made, if any. ``--local`` runs the same pass in this process
(``python -m workers.images_cli``, as ``sync --local`` does), with this shell's
credentials. Exit 1 when a policy or a source has an error or a problem.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

from scheduler.commands.validate import add_file_arg, fleet_file
from shared.errors import FleetsyncError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("images", help="image update automation: status, scan now")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    status = verbs.add_parser("status", help="policies, latest tags, Git, clusters")
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    add_file_arg(status)
    status.set_defaults(func=run_status)
    scan = verbs.add_parser("scan", help="scan policies now and commit what they chose")
    scan.add_argument("policies", nargs="*", metavar="POLICY",
                      help="policies to scan (default: every one in the spec)")
    scan.add_argument("--local", action="store_true",
                      help="run the scan and the commit in this process instead of on workers")
    scan.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                      help="wait for the result (default); --no-wait prints the task id")
    scan.add_argument("--timeout", type=float, default=300.0,
                      help="seconds to wait (default 300)")
    scan.add_argument("-o", "--output", choices=("text", "json"), default="text")
    add_file_arg(scan)
    scan.set_defaults(func=run_scan)


def _fleet(args: argparse.Namespace) -> Any:
    from shared.spec.load import load

    return load(fleet_file(args), allow_local=True)


def run_status(args: argparse.Namespace) -> int:
    from scheduler.images_view import view
    from shared.settings import from_env
    from shared.state.redisconn import connect

    found = view(connect(from_env().redis_url), _fleet(args))
    print(json.dumps(found, indent=2, sort_keys=True) if args.output == "json"
          else status_table(found, time.time()))
    return 0


def status_table(found: dict[str, Any], now: float) -> str:
    lines = [f"{'POLICY':<16} {'REPOSITORY':<40} {'LATEST':<14} {'DIGEST':<20} SCANNED"]
    for p in found["policies"]:
        latest = p["tag"] or ("error" if p["error"] else "-")
        lines.append(f"{p['name']:<16} {p['repository']:<40} {latest:<14} "
                     f"{(p['digest'] or '-')[:19]:<20} {ago(p['at'], now)}")
        if p["error"]:
            lines.append(f"  error: {p['error']}")
        elif p["why"]:
            lines.append(f"  why: {p['why']}")
        for m in p["git"]:
            lines.append(f"  git {m['source']}@{m['revision'][:7]}: {m['file']}:{m['line']} "
                         f"= {m['value']}")
        lines.extend(f"  clusters at {tag}: {names}" for tag, names in _by_tag(p["clusters"]))
    for s in found["sources"]:
        lines.append(f"source {s['name']} (push to {s['push_branch'] or '?'}): "
                     + _source_line(s, now))
        lines.extend(f"  problem: {problem}" for problem in s["problems"])
        lines.extend(f"  left out: {why}" for why in s["left_out"])
    return "\n".join(lines)


def _by_tag(clusters: list[dict[str, Any]]) -> list[tuple[str, str]]:
    tags: dict[str, list[str]] = {}
    for c in clusters:
        tags.setdefault(c["tag"], []).append(f"{c['cluster']} ({c['phase']})")
    return sorted((tag, ", ".join(sorted(names))) for tag, names in tags.items())


def _source_line(s: dict[str, Any], now: float) -> str:
    if not s.get("at"):
        return "no pass yet"
    if s.get("error"):
        return f"error {ago(s['at'], now)}: {s['error']}"
    if s.get("commit"):
        return (f"commit {s['commit'][:12]} {ago(s['at'], now)}, "
                f"{len(s['changes'])} change(s): {s.get('subject') or ''}")
    return f"nothing to commit {ago(s['at'], now)}"


def ago(at: float, now: float) -> str:
    if not at:
        return "never"
    stamp = datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{stamp} ({max(0, int(now - at))}s ago)"


def run_scan(args: argparse.Namespace) -> int:
    names = list(args.policies) or [p.name for p in _fleet(args).images]
    try:
        result = _scan_local(args, names) if args.local else _scan_remote(args, names)
    except FleetsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result is None:
        return 0
    print(json.dumps(result, indent=2, sort_keys=True) if args.output == "json"
          else scan_text(result))
    return 1 if failed(result) else 0


def _scan_remote(args: argparse.Namespace, names: list[str]) -> dict[str, Any] | None:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from scheduler.client import Client
    from shared import tasks_api
    from shared.celery_app import send

    client = Client()
    try:
        sent = send(client.app, tasks_api.SCAN_IMAGES, [names],
                    {"force": True, "trigger": "cli"})
        if not args.wait:
            print(f"enqueued {tasks_api.SCAN_IMAGES} {', '.join(names)} ({sent.id})")
            return None
        try:
            return dict(sent.get(timeout=args.timeout, propagate=True))
        except CeleryTimeout as exc:
            raise FleetsyncError(f"no result after {args.timeout:g} s (is a worker running "
                                 f"on this Redis?); task {sent.id}") from exc
        except Exception as exc:      # the task's own error, rebuilt by Celery
            raise FleetsyncError(f"the scan failed: {exc}") from exc
    finally:
        client.close()


def _scan_local(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "workers.images_cli", "-f", fleet_file(args), *names]
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise FleetsyncError("the local scan did not run (see above)")
    return dict(json.loads(done.stdout))


def failed(result: dict[str, Any]) -> bool:
    return bool(result.get("unknown")) or any(p.get("error") for p in result["policies"]) \
        or any(s.get("error") or s.get("problems") for s in result["sources"])


def scan_text(result: dict[str, Any]) -> str:
    """What each policy chose, then what each source got: its commit and changes."""
    lines = [f"unknown policy: {name}" for name in result.get("unknown", [])]
    for p in result["policies"]:
        if p.get("error"):
            lines.append(f"{p['policy']}: error: {p['error']}")
        else:
            was = f" (was {p['previous']})" if p.get("previous") not in (None, "", p["tag"]) \
                else ""
            lines.append(f"{p['policy']}: {p['tag']}{was} {p.get('digest', '')[:19]} "
                         f"{p.get('why', '')}".rstrip())
    for s in result["sources"]:
        lines.append(f"{s['source']}: " + _outcome(s))
        lines.extend(f"  {c['file']}:{c['line']} {c['policy']}: {c['old']} -> {c['new']}"
                     for c in s.get("changes") or [])
        lines.extend(f"  problem: {problem}" for problem in s.get("problems") or [])
        lines.extend(f"  left out: {why}" for why in s.get("left_out") or [])
    return "\n".join(lines)


def _outcome(s: dict[str, Any]) -> str:
    if s.get("error"):
        return f"error: {s['error']}"
    if s.get("skipped"):
        return f"nothing to do ({s['skipped']})"
    if s.get("commit"):
        return f"commit {s['commit'][:12]} pushed to {s.get('branch')}"
    return "nothing to commit"
