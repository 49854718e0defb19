"""``fleetsync render|diff|sync --local``: the pipeline run in this process.

``scheduler.commands.local`` starts ``python -m workers.local_cli`` with the
user's arguments, so that the scheduler side never imports worker code. Errors
go to stderr with exit code 1; a diff that finds drift exits 1 as well.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml

from shared.errors import FleetsyncError
from shared.logs import configure
from shared.redisconn import reachable
from shared.settings import from_env
from workers import pipeline


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetsync")
    parser.add_argument("command", choices=("render", "diff", "sync"))
    parser.add_argument("app")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("-f", "--file", default=os.environ.get("FLEETSYNC_FLEET"))
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    return parser.parse_args(argv)


def context(args: argparse.Namespace, use_redis: bool) -> pipeline.Context:
    if not args.file:
        raise FleetsyncError("no fleet spec: pass -f FILE or set FLEETSYNC_FLEET")
    settings = from_env().with_(fleet_path=args.file)
    return pipeline.Context.connect(settings, use_redis and reachable(settings.redis_url))


def rendered(ctx: pipeline.Context, args: argparse.Namespace) -> dict[str, Any]:
    app, _ = pipeline.resolve(ctx.fleet(), args.app, args.cluster)
    revision = pipeline.fetch(ctx, app.source)
    return pipeline.render(ctx, args.app, args.cluster, revision)


def cmd_render(args: argparse.Namespace) -> int:
    ctx = context(args, use_redis=False)
    objects = rendered(ctx, args)["_objects"]
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from workers.apply.diff import diff_unit, format_diff

    ctx = context(args, use_redis=False)
    result = rendered(ctx, args)
    app, cluster = pipeline.resolve(ctx.fleet(), args.app, args.cluster)
    changeset = diff_unit(ctx.kube(cluster), app, result["_objects"])
    text = format_diff(changeset)
    print(text if text else f"{args.app} on {args.cluster}: in sync with {result['revision'][:12]}")
    return 1 if changeset.has_writes() else 0


def cmd_sync(args: argparse.Namespace) -> int:
    ctx = context(args, use_redis=True)
    say = (lambda msg: print(msg, file=sys.stderr)) if args.output == "table" else (lambda _: None)
    if ctx.redis is None:
        say("Redis is not reachable: syncing without the workers' lock")
    result = pipeline.sync_unit(ctx, args.app, args.cluster, trigger="cli", progress=say)
    if args.output == "json":
        print(json.dumps(result, indent=2, default=str))
    else:
        print(format_result(result))
    return 0 if result.get("phase") in ("Ready", "Progressing") or result.get("coalesced") else 1


def format_result(result: dict[str, Any]) -> str:
    if result.get("coalesced"):
        return f"{result['app']} on {result['cluster']}: {result['message']}"
    lines = [f"{result['app']} on {result['cluster']} at {result.get('revision', '')[:12]}: "
             f"{result.get('phase')}"]
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
