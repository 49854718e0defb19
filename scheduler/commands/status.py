"""``fleetsync status`` and ``fleetsync history``: what Redis knows about every sync unit."""

from __future__ import annotations

import argparse
import json

from shared.redisconn import connect
from shared.settings import from_env
from shared.status import StatusStore


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="phase, revision and message of every sync unit")
    status.add_argument("--cluster")
    status.add_argument("--app")
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status.set_defaults(func=run_status)

    history = sub.add_parser("history", help="recent syncs of one unit, newest first")
    history.add_argument("app")
    history.add_argument("--cluster", required=True)
    history.add_argument("-o", "--output", choices=("table", "json"), default="table")
    history.set_defaults(func=run_history)


def _store() -> StatusStore:
    settings = from_env()
    return StatusStore(connect(settings.redis_url), settings.history_size)


def rows(cluster: str | None = None, app: str | None = None) -> list[dict]:
    keep = ("app", "cluster", "phase", "revision", "message", "last_synced_at")
    return [{k: s.to_dict()[k] for k in keep} for s in _store().all_statuses()
            if (cluster is None or s.cluster == cluster) and (app is None or s.app == app)]


def format_table(table: list[dict], columns: list[tuple[str, str, int]]) -> str:
    lines = ["  ".join(title.ljust(width) for _, title, width in columns).rstrip()]
    for row in table:
        lines.append("  ".join(str(row.get(key, ""))[:width].ljust(width)
                               for key, _, width in columns).rstrip())
    return "\n".join(lines)


STATUS_COLUMNS = [("cluster", "CLUSTER", 16), ("app", "APP", 20), ("phase", "PHASE", 11),
                  ("short_revision", "REVISION", 12), ("last_synced_at", "SYNCED", 24),
                  ("message", "MESSAGE", 60)]


def run_status(args: argparse.Namespace) -> int:
    table = rows(args.cluster, args.app)
    if args.output == "json":
        print(json.dumps(table, indent=2))
        return 0
    if not table:
        print("no sync units known yet (is beat running, or has anything been synced?)")
        return 0
    for row in table:
        row["short_revision"] = row["revision"][:12]
    print(format_table(table, STATUS_COLUMNS))
    return 0


def run_history(args: argparse.Namespace) -> int:
    entries = _store().history(args.app, args.cluster)
    if args.output == "json":
        print(json.dumps(entries, indent=2))
        return 0
    for entry in entries:
        entry["short_revision"] = entry.get("revision", "")[:12]
        entry["changed"] = ", ".join(f"{k} {v}" for k, v in entry.get("changes", {}).items() if v)
    print(format_table(entries, [
        ("started_at", "STARTED", 24), ("finished_at", "FINISHED", 24),
        ("trigger", "TRIGGER", 9), ("result", "RESULT", 11), ("short_revision", "REVISION", 12),
        ("changed", "CHANGES", 40)]))
    return 0
