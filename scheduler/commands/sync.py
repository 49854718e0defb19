"""``fleetsync sync APP [--cluster C] [--wait] [--timeout S] [--reason TEXT] [--by WHO] [--local]``.

``--reason`` is what lets a sync through a change window that holds a unit (when the
window says ``manualSync: true``); it is recorded, with ``--by`` (default: the user
running the command), in the unit's history and in an audit log line."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from scheduler.commands.local import run_local
from scheduler.commands.validate import add_file_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("sync", help="sync an application now (enqueued, or --local here)")
    parser.add_argument("app")
    parser.add_argument("--cluster", help="one cluster (default: every cluster APP targets)")
    parser.add_argument("--wait", action="store_true", help="wait for the outcome; exit 0 only when every unit ends Ready")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    parser.add_argument("--local", action="store_true",
                        help="fetch, render and apply in this process instead of on workers")
    parser.add_argument("--reason", default="",
                        help="why: needed to sync through a change window that holds a unit "
                             "(recorded in history and the audit log)")
    parser.add_argument("--by", default="", help="who asks (default: this user)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    add_file_arg(parser)
    parser.set_defaults(func=run, local_command="sync")


def run(args: argparse.Namespace) -> int:
    if args.local:
        if not args.cluster:
            print("error: --local needs --cluster", file=sys.stderr)
            return 2
        return run_local(args)
    from scheduler.client import Client

    client = Client()
    try:
        result = client.sync(args.app, args.cluster, wait=args.wait, timeout=args.timeout,
                             trigger="cli", reason=args.reason, by=args.by or _user())
    except Exception as exc:  # the task's own error, reconstructed by Celery
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if args.output == "json":
        print(json.dumps(result, indent=2, default=str))
    elif not args.wait:
        print(f"enqueued fleetsync.sync {args.app} ({result['task_id']})")
    else:
        for unit in result["units"]:
            print(f"{unit.get('cluster') or '?':<20} {unit.get('phase', '?'):<12} "
                  f"{(unit.get('revision') or '')[:12]:<13} {unit.get('message', '')}")
        late = [u["cluster"] for u in result["units"] if u.get("timed_out")]
        if late:
            print(f"timed out after {args.timeout:g} s; still running: {', '.join(late)}",
                  file=sys.stderr)
    return 0 if not args.wait or result.get("ok") else 1


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"
