"""``fleetsync preview --local``: a preview carried out in this process, as workers would.

``scheduler.commands.preview`` starts ``python -m workers.preview_cli`` with the
user's arguments and reads the preview's record, as JSON, from its stdout; progress
goes to stderr. With Redis reachable the record is kept there like any other
preview (the dashboard lists it); without, in memory for this run only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from shared.errors import FleetsyncError
from shared.logs import configure
from shared.settings import from_env
from shared.state import previews
from shared.state.redisconn import reachable
from workers.context import Context
from workers.run import previewing

SPEC_BYTES = 1024 * 1024        # as the spec loader's own limit


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fleetsync preview --local")
    parser.add_argument("--source", required=True)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--revision", default="")
    parser.add_argument("--base", default="")
    parser.add_argument("--app", action="append", default=[])
    parser.add_argument("--cluster-selector", default="")
    parser.add_argument("--spec", default="", help="the candidate fleet spec")
    parser.add_argument("-f", "--file", default=os.environ.get("FLEETSYNC_FLEET"))
    return parser.parse_args(argv)


def selector_of(text: str) -> dict[str, str] | None:
    pairs = [p.partition("=") for p in text.split(",") if p.strip()]
    return {k.strip(): v.strip() for k, _, v in pairs} or None


def preview_here(ctx: Context, args: argparse.Namespace) -> dict:
    """Create the preview's record, carry out its parts one cluster after another."""
    meta = previews.create(ctx.redis, source=args.source, ref=args.ref, base=args.base,
                           apps=args.app, selector=selector_of(args.cluster_selector),
                           requested_by=os.environ.get("USER", ""), origin={"local": True})
    pid = meta["id"]
    if args.revision:
        previews.update(ctx.redis, pid, revision=args.revision)
    if args.spec:
        previews.update(ctx.redis, pid, spec=_read(args.spec))
    result, sends = previewing.begin(ctx, pid, args.source, args.ref)
    if result.get("failed"):
        print(f"error: {result['failed']}", file=sys.stderr)
    for number, send in enumerate(sends, 1):
        cluster = send.args[1]
        apps, added, removed = (list(send.kwargs.get(k) or []) for k in ("units", "added",
                                                                          "removed"))
        try:
            previewing.part(ctx, pid, cluster, apps, added, removed)
        except FleetsyncError as exc:
            previewing.part_failed(ctx, pid, cluster, apps + added + removed, exc)
        print(f"preview {pid}: {number}/{len(sends)} clusters", file=sys.stderr)
    found = previews.load(ctx.redis, pid)
    return found or {}


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read(SPEC_BYTES + 1)      # the loader refuses what is over
    except OSError as exc:
        raise FleetsyncError(f"--spec {path}: {exc.strerror}") from exc


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    configure(os.environ.get("FLEETSYNC_LOG_LEVEL", "WARNING").upper())
    if not args.file:
        print("error: no fleet spec: pass -f FILE or set FLEETSYNC_FLEET", file=sys.stderr)
        return 1
    settings = from_env().with_(fleet_path=args.file)
    ctx = Context.connect(settings, reachable(settings.redis_url))
    try:
        record = preview_here(ctx, args)
    except FleetsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    json.dump(record, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
