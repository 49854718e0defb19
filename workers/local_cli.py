"""``fleetsync render|diff|sync --local``: the stages run in this process.

``scheduler.commands.local`` starts ``python -m workers.local_cli`` with the
user's arguments, so that the scheduler side never imports worker code. Errors
go to stderr with exit code 1; a diff that finds drift exits 1 as well.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import yaml

from shared import tasks_api
from shared.errors import FleetsyncError
from shared.logs import configure
from shared.state.redisconn import reachable
from shared.settings import from_env
from workers.run import followup, requests, runner, stages
from workers.run.steps import Send, call_of
from workers.context import Context
from workers.render.engine import Rendered


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetsync")
    parser.add_argument("command", choices=("render", "diff", "sync"))
    parser.add_argument("app")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("-f", "--file", default=os.environ.get("FLEETSYNC_FLEET"))
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument("--reason", default="", help="sync: why, through a change window")
    parser.add_argument("--by", default="", help="sync: who asks")
    return parser.parse_args(argv)


def context(args: argparse.Namespace, use_redis: bool) -> Context:
    if not args.file:
        raise FleetsyncError("no fleet spec: pass -f FILE or set FLEETSYNC_FLEET")
    settings = from_env().with_(fleet_path=args.file)
    return Context.connect(settings, use_redis and reachable(settings.redis_url))


def rendered(ctx: Context, args: argparse.Namespace) -> Rendered:
    unit = stages.resolve_unit(ctx, args.app, args.cluster)
    return stages.render(ctx, unit, stages.fetch(ctx, unit.app.source))


def cmd_render(args: argparse.Namespace) -> int:
    ctx = context(args, use_redis=False)
    result = rendered(ctx, args)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    yaml.safe_dump_all(result.objects, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from workers.apply.diff import diff_unit, format_diff
    from workers.apply.hooks import split

    ctx = context(args, use_redis=False)
    result = rendered(ctx, args)
    app, cluster = stages.resolve(ctx.fleet(), args.app, args.cluster)
    _, objects = split(result.objects)        # hooks are not desired state: never diffed
    changeset = diff_unit(ctx.kube(cluster).session(stages.identity_of(app, cluster)), app,
                          objects)
    text = format_diff(changeset)
    revision = ctx.status.source_revision(app.source)
    at = revision[0][:12] if revision else ""
    print(text if text else f"{args.app} on {args.cluster}: in sync with {at}")
    return 1 if changeset.has_writes() else 0


def cmd_sync(args: argparse.Namespace) -> int:
    ctx = context(args, use_redis=True)
    say = (lambda msg: print(msg, file=sys.stderr)) if args.output == "table" else (lambda _: None)
    if ctx.local:
        say("Redis is not reachable: syncing without the workers' lock")
    result = sync_here(ctx, args.app, args.cluster, progress=say, reason=args.reason,
                       by=args.by)
    if args.output == "json":
        print(json.dumps(result, indent=2, default=str))
    else:
        print(format_result(result))
    return 0 if result.get("phase") in ("Ready", "Progressing") or result.get("coalesced") else 1


def sync_here(ctx: Context, app: str, cluster: str, progress: Any,
              timeout: float = 600.0, reason: str = "", by: str = "") -> dict[str, Any]:
    """Request a run and carry out its stages in this process, as workers would
    (``reason``, ``by``: a manual sync through a change window)."""
    request, sends = requests.request(ctx, app, cluster, "cli", fresh=True, by=by,
                                      reason=reason)
    progress(f"fetched at {request.get('revision', '')[:12]}")
    if request.get("error"):
        return {**request, "phase": "Failed", "message": request["error"]}
    if request["joined"] and not sends:
        return {**request, "coalesced": True,
                "message": f"joined run {request['run_id']} queued by the workers"}
    deadline = time.monotonic() + timeout
    result: dict[str, Any] = {}
    while sends and time.monotonic() < deadline:
        send = sends.pop(0)
        if send.name == tasks_api.CHECK_HEALTH:     # the run ended Progressing: follow it
            time.sleep(min(send.countdown, max(0.0, deadline - time.monotonic())))
            nxt = followup.check_health(ctx, followup.health_call_of(send.args, send.kwargs))
            result = {**result, **nxt.result}
            progress(result.get("summary", ""))
            sends += list(nxt.send)
            continue
        call = call_of(send.name, send.args, send.kwargs)
        stage = runner.render if send.name.endswith("render") else runner.apply
        nxt = stage(ctx, call)
        if nxt.error is not None:
            raise nxt.error
        result = nxt.result
        if "objects" in result:
            progress(f"rendered {result['objects']} object(s)")
        if result.get("verdict") == "busy":
            return {**result, "app": app, "cluster": cluster, "coalesced": True,
                    "message": "the unit is being synced by a worker; this run goes next"}
        sends += [s for s in nxt.send if s.kwargs.get("run_id") == call.run_id
                  or s.name == tasks_api.CHECK_HEALTH]
        if nxt.retry_in is not None:
            progress(f"{result.get('summary', 'retrying')}")
            time.sleep(min(nxt.retry_in, max(0.0, deadline - time.monotonic())))
            sends.insert(0, Send(send.name, send.args, {**send.kwargs, **nxt.retry_kwargs}))
    return result


def format_result(result: dict[str, Any]) -> str:
    if result.get("coalesced"):
        return f"{result['app']} on {result['cluster']}: {result['message']}"
    lines = [f"{result['app']} on {result['cluster']} at {result.get('revision', '')[:12]}: "
             f"{result.get('phase')}"]
    if result.get("phase") == "Failed" and result.get("message"):    # why, first
        lines.append(f"  {result['message']}")
    for action, names in (result.get("changed") or {}).items():
        for name in names:
            lines.append(f"  {action:<10} {name}")
    counts = result.get("counts", {})
    lines.append("  " + ", ".join(f"{n} {a}" for a, n in counts.items() if n) or "  nothing to do")
    if result.get("requests") is not None:
        lines.append(f"  {result['requests']} API request(s), {result.get('writes', 0)} write(s)")
    return "\n".join(lines)


COMMANDS = {"render": cmd_render, "diff": cmd_diff, "sync": cmd_sync}


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    configure(os.environ.get("FLEETSYNC_LOG_LEVEL", "WARNING").upper())
    try:
        return COMMANDS[args.command](args)
    except FleetsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:          # `fleetsync render ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
