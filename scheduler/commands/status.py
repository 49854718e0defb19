"""``fleetsync status`` and ``fleetsync history``: what Redis knows about every sync unit.

The status table is read when something is wrong, so it shows the reason first
and one line per unit, whatever the messages look like: the ``cluster/app
@rev:`` prefix that every error carries (and that the table's own columns
already say) is stripped, multi-line messages (lists of invalid objects) are
folded onto one line, and the line is cut to the terminal's width
(``shutil.get_terminal_size``, so ``COLUMNS`` works in scripts). ``-o wide``
prints the whole message, still one line per unit; ``-o json`` gives every
field as stored.

Each unit shows its AGE, the time since its last run ended. A unit not run for
more than 3 of its intervals is stale (DESIGN: phases): its phase shows as
``Unknown (stale since <last_synced_at>)``, because what Redis says about it
may no longer be true (beat stopped, workers gone). ``-o json`` keeps the
stored phase and adds ``age_s`` and ``stale``.

With ``FLEETSYNC_FLOWER_URL`` set, ``history`` and ``status -o wide`` link each
sync to its Celery task in Flower (``<url>/task/<task_id>``): the task that
ended the run, whose result or exception tells what happened.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from datetime import datetime, timezone

from scheduler.links import task_url
from shared.state.redisconn import connect
from shared.settings import from_env
from shared.state.status import StatusStore

_PREFIX = re.compile(r"(?P<unit>[^\s:]+)(?: @[0-9a-f]+)?(?: \[(?P<obj>[^\]]*)\])?: ")
_QUIET = ("Ready", "Suspended", "Unknown")    # phases whose message is not a failure reason
STALE_INTERVALS = 3                           # a unit not run for this many intervals is stale
ELLIPSIS = "…"
MIN_MESSAGE = 20
DEFAULT_WIDTH = 120


def add_parser(sub: argparse._SubParsersAction) -> None:
    status = sub.add_parser("status", help="phase, revision and message of every sync unit")
    status.add_argument("--cluster")
    status.add_argument("--app")
    status.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table")
    status.set_defaults(func=run_status)

    history = sub.add_parser("history", help="recent syncs of one unit, newest first")
    history.add_argument("app")
    history.add_argument("--cluster", required=True)
    history.add_argument("-o", "--output", choices=("table", "json"), default="table")
    history.set_defaults(func=run_history)


def _store() -> StatusStore:
    settings = from_env()
    return StatusStore(connect(settings.redis_url), settings.history_size)


def rows(cluster: str | None = None, app: str | None = None, *,
         with_reason: bool = False, now: datetime | None = None) -> list[dict]:
    now = now or datetime.now(timezone.utc)
    keep: tuple[str, ...] = ("app", "cluster", "phase", "revision", "message", "last_synced_at",
                             "held_by", "held_until", "held_revision")
    keep += ("reason",) if with_reason else ()
    out = []
    for s in _store().all_statuses():
        if (cluster is None or s.cluster == cluster) and (app is None or s.app == app):
            age_s, stale = freshness(s.last_synced_at, s.interval, now)
            out.append({**{k: s.to_dict()[k] for k in keep}, "age_s": age_s, "stale": stale})
    return out


# -- the message, made readable (pure) ------------------------------------------

def strip_unit(message: str, app: str, cluster: str) -> str:
    """``message`` without the ``cluster/app @rev [obj]:`` prefix errors carry."""
    units = {f"{app}/{cluster}", f"{cluster}/{app}", app}
    found = _PREFIX.match(message)
    if found is None or found["unit"] not in units:
        return message
    rest = message[found.end():]
    obj = found["obj"]
    return f"{obj}: {rest}" if obj and obj not in rest else rest


def fold(message: str) -> str:
    """Every line of ``message`` on one line: after a ``:`` with a space, else with ``; ``."""
    out = ""
    for line in (part.strip() for part in message.splitlines()):
        if line:
            out += line if not out else (" " if out.endswith(":") else "; ") + line
    return out


def summary(row: dict) -> str:
    """What to read first about a unit: the reason of a failure, then the message, one line."""
    text = fold(strip_unit(row.get("message", ""), row["app"], row["cluster"]))
    reason = row.get("reason", "")
    if reason and row.get("phase") not in _QUIET and not text.startswith(reason):
        return f"{reason}: {text}" if text else reason
    return text


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + ELLIPSIS


def _parse(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def freshness(last_synced_at: str, interval: float, now: datetime) -> tuple[float | None, bool]:
    """Seconds since the unit's last run ended (None: never), and whether that is more
    than ``STALE_INTERVALS`` of its intervals (never stale while the interval is unknown)."""
    then = _parse(last_synced_at)
    if then is None:
        return None, False
    age_s = round(max(0.0, (now - then).total_seconds()), 1)
    return age_s, interval > 0 and age_s > STALE_INTERVALS * interval


def phase_shown(row: dict) -> str:
    """The phase as the table shows it: ``Unknown (stale since ...)`` for a stale unit."""
    return f"Unknown (stale since {row['last_synced_at']})" if row.get("stale") else row["phase"]


def age(stamp: str, now: datetime) -> str:
    """``2025-01-02T03:04:05.000Z`` as ``5s``, ``3m``, ``2h`` or ``4d`` before ``now``."""
    then = _parse(stamp)
    if then is None:
        return stamp
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def format_status(table: list[dict], *, width: int, wide: bool = False,
                  now: datetime | None = None) -> str:
    """The status table, one line per unit; messages cut to ``width`` unless ``wide``."""
    now = now or datetime.now(timezone.utc)
    linked = wide and any(r.get("flower") for r in table)
    lines = [{"cluster": r["cluster"], "app": r["app"], "phase": phase_shown(r),
              "revision": r["revision"][:12 if wide else 8],
              **({"synced": r["last_synced_at"]} if wide else {}),
              "age": age(r["last_synced_at"], now),
              **({"flower": r.get("flower", "")} if linked else {}),
              "message": summary(r)} for r in table]
    titles = {"cluster": "CLUSTER", "app": "APP", "phase": "PHASE", "revision": "REVISION",
              **({"synced": "SYNCED"} if wide else {}), "age": "AGE",
              **({"flower": "FLOWER"} if linked else {}), "message": "MESSAGE"}
    widths = {key: max([len(title)] + [len(line[key]) for line in lines])
              for key, title in titles.items() if key != "message"}
    room = max(MIN_MESSAGE, width - sum(w + 2 for w in widths.values()))
    out = []
    for line in [titles, *lines]:
        fixed = "  ".join(line[key].ljust(w) for key, w in widths.items())
        message = line["message"] if wide or line is titles else cut(line["message"], room)
        out.append(f"{fixed}  {message}".rstrip())
    return "\n".join(out)


def run_status(args: argparse.Namespace) -> int:
    now = datetime.now(timezone.utc)
    if args.output == "json":
        print(json.dumps(rows(args.cluster, args.app, now=now), indent=2))
        return 0
    table = rows(args.cluster, args.app, with_reason=True, now=now)
    if not table:
        print("no sync units known yet (is beat running, or has anything been synced?)")
        return 0
    flower_url = from_env().flower_url
    if args.output == "wide" and flower_url:
        store = _store()
        for row in table:
            last = store.history(row["app"], row["cluster"], limit=1)
            row["flower"] = task_url(flower_url, last[0].get("task_id", "") if last else "")
    width = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    print(format_status(table, width=width, wide=args.output == "wide", now=now))
    return 0


# -- history --------------------------------------------------------------------

def format_table(table: list[dict], columns: list[tuple[str, str, int]]) -> str:
    lines = ["  ".join(title.ljust(width) for _, title, width in columns).rstrip()]
    for row in table:
        lines.append("  ".join(str(row.get(key, ""))[:width].ljust(width)
                               for key, _, width in columns).rstrip())
    return "\n".join(lines)


def run_history(args: argparse.Namespace) -> int:
    entries = _store().history(args.app, args.cluster)
    flower_url = from_env().flower_url
    if flower_url:
        for entry in entries:
            entry["flower_url"] = task_url(flower_url, entry.get("task_id", ""))
    if args.output == "json":
        print(json.dumps(entries, indent=2))
        return 0
    print(format_history(entries, linked=bool(flower_url)))
    return 0


def format_history(entries: list[dict], *, linked: bool = False) -> str:
    """The history table; its last column is the Flower link of each task, else the task id."""
    rows = [{**entry, "short_revision": entry.get("revision", "")[:12],
             "changed": ", ".join(f"{k} {v}" for k, v in entry.get("changes", {}).items() if v)}
            for entry in entries]
    last = ("flower_url", "FLOWER") if linked else ("task_id", "TASK")
    width = max([len(last[1])] + [len(str(r.get(last[0], ""))) for r in rows])
    table = format_table(rows, [
        ("started_at", "STARTED", 24), ("finished_at", "FINISHED", 24),
        ("trigger", "TRIGGER", 9), ("result", "RESULT", 11), ("short_revision", "REVISION", 12),
        ("changed", "CHANGES", 40), (*last, width)]).splitlines()
    lines = table[:1]
    for row, line in zip(rows, table[1:]):    # each entry, then what it corrected or why
        lines.append(line)
        for ref, fields in (row.get("drift") or {}).items():
            lines += [f"    drift corrected: {ref} {field}" for field in fields]
        lines += [f"    hook run: {hook}" for hook in row.get("hooks") or []]
        if str(row.get("subject", "")).startswith("oci "):     # an OCI artifact's tag, digest
            lines.append(f"    artifact: {row['subject'][4:][:200]}")
        if row.get("result") not in ("Ready", "Progressing") and row.get("message"):
            lines.append(f"    {row['message'].splitlines()[0][:200]}")
    return "\n".join(lines)
