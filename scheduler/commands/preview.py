"""``fleetsync preview --source S (--ref REF | --revision SHA) [--base REF] [--app A]...``.

What a candidate revision would do to every cluster, before it is merged: the
preview is enqueued on the workers (``scheduler.previews.start``) and followed in
Redis, showing ``done/total`` clusters while it runs, then reported per
application and cluster. ``--local`` runs it in this process (``python -m
workers.preview_cli``, as ``sync --local`` does). Exit 0 when nothing would change,
1 when something would, 2 when a unit is refused or failed (or the wait ran out).
"""

from __future__ import annotations

import argparse
import getpass
import json
import subprocess
import sys
import time
from typing import Any

from scheduler.commands.validate import add_file_arg
from shared.errors import FleetsyncError
from shared.state import previews

SYMBOLS = {"create": "+", "update": "~", "prune": "-", "refused": "!"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("preview", help="what a branch, tag or commit would change on "
                                            "every cluster (server-side dry-run; nothing written)")
    parser.add_argument("--source", required=True, help="the Git source to preview")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--ref", default="", help="branch, tag or SHA of the candidate")
    which.add_argument("--revision", default="", help="the candidate commit (full or short SHA)")
    parser.add_argument("--base", default="",
                        help="ref to compare with (default: what the fleet applies now)")
    parser.add_argument("--app", action="append", default=[],
                        help="only this application (repeatable)")
    parser.add_argument("--cluster-selector", default="", metavar="KEY=VALUE[,...]",
                        help="only clusters with these labels")
    parser.add_argument("--spec", default="", metavar="FILE",
                        help="a candidate fleet spec: units it adds or drops by targeting "
                             "(cluster labels, selectors, clusters) are previewed too")
    parser.add_argument("-o", "--output", choices=_outputs(), default="text")
    parser.add_argument("--local", action="store_true",
                        help="run the preview in this process instead of on workers")
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                        help="wait for the report (default); --no-wait prints the id")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait (default 600)")
    add_file_arg(parser)
    parser.set_defaults(func=run)


def _outputs() -> tuple[str, ...]:
    try:
        import scheduler.preview_markdown  # noqa: F401  (the renderer of -o markdown)
    except ImportError:
        return ("text", "json")
    return ("text", "json", "markdown")


def selector_of(text: str) -> dict[str, str] | None:
    """``env=prod,region=eu`` as labels; ``FleetsyncError`` naming a malformed pair."""
    if not text.strip():
        return None
    found = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FleetsyncError(f"--cluster-selector: {pair!r} is not KEY=VALUE")
        found[key.strip()] = value.strip()
    return found


def run(args: argparse.Namespace) -> int:
    try:
        selector = selector_of(args.cluster_selector)
        record = _run_local(args) if args.local else _run_remote(args, selector)
    except FleetsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if record is None:
        return 0
    print(render(record, args.output))
    if record.get("state") == "running":
        print(f"error: the preview was still running after {args.timeout:g} s "
              f"({record.get('done', 0)}/{record.get('total', 0)} clusters)", file=sys.stderr)
        return 2
    code = previews.exit_code(record.get("units", []))
    return 2 if record.get("state") == "failed" else code


def _run_remote(args: argparse.Namespace, selector: dict[str, str] | None
                ) -> dict[str, Any] | None:
    from scheduler.client import Client
    from scheduler.previews import start_with_spec
    from shared.state.redisconn import connect

    spec = _spec_text(args.spec)
    client = Client()
    try:
        redis = connect(client.settings.redis_url)
        pid = start_with_spec(client.app, redis, source=args.source, ref=args.ref,
                              revision=args.revision, base=args.base, apps=args.app,
                              selector=selector, requested_by=getpass.getuser(), spec=spec)
        if not args.wait:
            print(pid)
            return None
        return follow(redis, pid, args.timeout, args.output == "text")
    finally:
        client.close()


def _spec_text(path: str) -> str:
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetsyncError(f"--spec {path}: {exc}") from exc


def follow(redis: Any, pid: str, timeout: float, show: bool, poll: float = 0.25
           ) -> dict[str, Any]:
    """The preview's record once it ends (or as it is when ``timeout`` runs out), showing
    ``done/total`` on stderr while it runs."""
    deadline, said = time.monotonic() + timeout, ""
    while True:
        record = previews.load(redis, pid)
        if record is None:
            raise FleetsyncError(f"preview {pid} is gone (Redis was flushed or it expired)")
        if record["state"] != "running" or time.monotonic() >= deadline:
            return record
        line = f"preview {pid}: {record['done']}/{record['total'] or '?'} clusters"
        if show and line != said:
            print(line, file=sys.stderr)
            said = line
        time.sleep(poll)


def _run_local(args: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, "-m", "workers.preview_cli", "--source", args.source,
            "--ref", args.ref or args.revision]
    argv += ["--revision", args.revision] if args.revision else []
    argv += ["--base", args.base] if args.base else []
    argv += [arg for app in args.app for arg in ("--app", app)]
    argv += ["--cluster-selector", args.cluster_selector] if args.cluster_selector else []
    argv += ["-f", args.file] if args.file else []
    argv += ["--spec", args.spec] if args.spec else []
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise FleetsyncError("the local preview did not run (see above)")
    return json.loads(done.stdout)


def render(record: dict[str, Any], output: str) -> str:
    if output == "json":
        return json.dumps(record.get("units", []), indent=2, sort_keys=True)
    if output == "markdown":
        from scheduler.preview_markdown import render as markdown

        return str(markdown(record))
    return text(record)


def text(record: dict[str, Any]) -> str:
    """Per application, its clusters that change (objects and field paths), then counts."""
    rev, base = (record.get("revision") or "")[:12], (record.get("base_revision") or "")[:12]
    lines = [f"preview of {record.get('source')}@{record.get('ref')} ({rev}) against {base}"]
    if record.get("message"):
        lines.append(f"  {record['message']}")
    app = None
    for unit in record.get("units", []):
        if unit["outcome"] == "unchanged":
            continue
        if unit["app"] != app:
            app = unit["app"]
            lines.append(f"{app}:")
        note = f": {unit['message']}" if unit.get("message") else ""
        lines.append(f"  {unit['cluster']}: {unit['outcome']}{note}")
        for obj in unit.get("objects", []):
            lines.append("    " + _object_line(obj))
    lines.append(_summary_line(record))
    return "\n".join(lines)


def _object_line(obj: dict[str, Any]) -> str:
    where = f"{obj['kind']}/{obj['namespace']}/{obj['name']}" if obj.get("namespace") \
        else f"{obj['kind']}/{obj['name']}"
    tail = f" ({', '.join(obj['fields'])})" if obj.get("fields") else ""
    why = f": {obj['message']}" if obj.get("message") else ""
    return f"{SYMBOLS.get(obj['action'], '?')} {where}{tail}{why}"


def _summary_line(record: dict[str, Any]) -> str:
    s = record.get("summary") or previews.summary(record.get("units", []))
    return (f"{s['units']} units: {s['units_changed']} change ({s['apps_changed']} apps, "
            f"{s['clusters_changed']} clusters), {s['refused']} refused, {s['failed']} failed, "
            f"{s['units'] - s['units_changed'] - s['refused'] - s['failed']} unchanged")
