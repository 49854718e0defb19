"""``fleetsync rollout status|pause|resume|promote|abort APP`` and ``fleetsync suspend|resume
APP [--cluster C]``: operators' holds on an application, kept in Redis.

They read the fleet spec (``-f`` or ``$FLEETSYNC_FLEET``) for the application's
waves, change its record through ``scheduler/holds.py`` and enqueue a sync of
the application so that its units obey at once. ``--by`` names who did it (by
default the user running the command); it is recorded with the time.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from scheduler.commands.validate import add_file_arg

ACTIONS = ("status", "pause", "resume", "promote", "abort")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("rollout", help="where an application's rollout in waves stands; "
                                            "pause, resume, promote or abort it")
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("app")
    parser.add_argument("--wave", type=int, help="promote: start this wave (1-based) and every "
                                                 "one before it (default: the next)")
    _common(parser)
    parser.set_defaults(func=run_rollout)
    for name, what in (("suspend", "stop syncing an application (or one cluster of it) "
                                   "without editing the spec"),
                       ("resume", "lift fleetsync suspend and sync now")):
        hold = sub.add_parser(name, help=what)
        hold.add_argument("app")
        hold.add_argument("--cluster", help="one cluster (default: the whole application)")
        _common(hold)
        hold.set_defaults(func=run_hold, hold=name)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", help="who does it (default: the user running the command)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    add_file_arg(parser)


def run_rollout(args: argparse.Namespace) -> int:
    from scheduler.holds import HoldError

    operator, close = _operator(args)
    by = args.by or _user()
    try:
        if args.action == "status":
            found = operator.status(args.app)
        elif args.action == "pause":
            found = operator.pause(args.app, by)
        elif args.action == "resume":
            found = operator.resume_rollout(args.app, by)
        elif args.action == "promote":
            found = operator.promote(args.app, by, args.wave)
        else:
            found = operator.abort(args.app, by)
    except HoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        close()
    print(json.dumps(found, indent=2) if args.output == "json" else "\n".join(table(found)))
    return 0


def run_hold(args: argparse.Namespace) -> int:
    from scheduler.holds import HoldError

    operator, close = _operator(args)
    by = args.by or _user()
    try:
        if args.hold == "suspend":
            found = operator.suspend(args.app, args.cluster, by)
            line = found["message"]
        else:
            found = operator.resume(args.app, args.cluster, by)
            line = (f"resumed {args.app}{' on ' + args.cluster if args.cluster else ''} "
                    f"(lifted: {', '.join(_held(s) for s in found['lifted'])}); sync enqueued "
                    f"({found['task_id']})")
    except HoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        close()
    print(json.dumps(found, indent=2) if args.output == "json" else line)
    return 0


def table(found: dict[str, Any]) -> list[str]:
    """The rollout as people read it: one line of state, one per cluster, the events."""
    head = f"{found['app']}: {found['state']}"
    if found["target"]:
        head += (f" at wave {found['wave']} of {len(found['waves'])}: "
                 f"{found['target'][:12]} (stable: {found['stable'][:12] or 'none yet'})")
    lines = [head]
    for why in (found["halted"], found["paused"] and f"paused {found['paused']}"):
        if why:
            lines.append(f"  {why}")
    lines.append(f"{'WAVE':<5} {'CLUSTER':<20} {'ALLOWED':<13} {'PHASE':<12} REVISION")
    for wave in found["waves"]:
        for unit in wave["clusters"]:
            lines.append(f"{wave['wave']:<5} {unit['cluster']:<20} "
                         f"{unit['allowed'][:12] or '(waits)':<13} {unit['phase']:<12} "
                         f"{unit['revision'][:12]}")
    lines += [f"  {e['at']}  {e['message']}" for e in found["events"][-8:]]
    lines += [f"  {_held(s)}" for s in found.get("suspensions", [])]
    return lines


def _held(s: dict[str, Any]) -> str:
    return f"{s['cluster'] or 'every cluster'} suspended by {s['by']} at {s['at']}"


def _operator(args: argparse.Namespace) -> tuple[Any, Any]:
    from scheduler.client import Client
    from scheduler.holds import Operator
    from shared.celery_app import send
    from shared.errors import SpecError
    from shared.logs import configure
    from shared.state.redisconn import connect
    from shared.spec.load import load_fleet

    client = Client()
    configure(client.settings.log_level)        # the audit line: JSON on stderr
    try:
        fleet = load_fleet(args.file) if args.file else None
    except SpecError as exc:
        print(f"warning: the fleet spec does not load: {exc}", file=sys.stderr)
        fleet = None

    def send_task(name: str, task_args: list[Any], kwargs: dict[str, Any]) -> str:
        return str(send(client.app, name, task_args, kwargs).id)
    return Operator(connect(client.settings.redis_url), fleet, send_task,
                    history_size=client.settings.history_size), client.close


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
