"""``fleetsync windows [-o text|json] [-f FILE]``: the spec's change windows as they stand now.

For each window: its kind, schedule and time zone, the units it selects, whether it is
open now and when it next opens or closes (``shared/spec/window_rules.py`` decides),
and the units it holds now with the revision each stays at and the one that waits
(their status records in Redis, as the workers wrote them: ``held_by``,
``held_until``, ``held_revision``). Redis not answering costs only that last part.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from scheduler.commands.validate import fleet_file
from shared import clock
from shared.settings import from_env
from shared.spec.load import load_fleet
from shared.spec.model import Fleet, Window
from shared.spec.window_rules import is_open, window_change
from shared.state.redisconn import RedisError, RedisURLError, connect
from shared.state.status import StatusStore, UnitStatus


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("windows", help="list change windows: the units each selects, "
                                            "whether it is open, when it next opens or closes")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    parser.add_argument("-f", "--file", "--fleet", dest="file", default=None,
                        help="the fleet spec (default: $FLEETSYNC_FLEET)")
    parser.add_argument("--at", help=argparse.SUPPRESS)   # an ISO instant instead of now (tests)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    args.file = args.file or os.environ.get("FLEETSYNC_FLEET")
    fleet = load_fleet(fleet_file(args))
    now = datetime.fromisoformat(args.at) if args.at else clock.now()
    statuses, error = _statuses()
    rows = [{**describe(fleet, w, now), "held": held_units(w, statuses)} for w in fleet.windows]
    if args.output == "json":
        print(json.dumps({"now": now.isoformat(), "windows": rows,
                          **({"held_error": error} if error else {})}, indent=2))
    else:
        print(_text(rows))
        if error:
            print(f"held units not known: {error}")
    return 0


def _statuses() -> tuple[list[UnitStatus], str]:
    """Every unit's status, or why Redis could not say."""
    try:
        return StatusStore(connect(from_env().redis_url)).all_statuses(), ""
    except (RedisError, RedisURLError) as exc:
        return [], f"Redis did not answer ({type(exc).__name__}: {exc})"


def held_units(window: Window, statuses: list[UnitStatus]) -> list[dict[str, str]]:
    """The units this window holds now, as their status says."""
    return [{"application": s.app, "cluster": s.cluster, "revision": s.revision,
             "waiting": s.held_revision, "until": s.held_until}
            for s in statuses if s.held_by == window.name]


def describe(fleet: Fleet, window: Window, now: datetime) -> dict[str, Any]:
    units = [{"application": a, "cluster": c} for a, c in fleet.units()
             if window.selects(a, fleet.clusters[c])]
    change = window_change(window, now)
    open_now = is_open(window, now)
    return {"name": window.name, "kind": window.kind, "schedule": window.schedule,
            "duration": window.duration, "time_zone": window.time_zone,
            "manual_sync": window.manual_sync, "drift": window.drift,
            "units": units, "open": open_now,
            "next_close" if open_now else "next_open": _local(change, window.time_zone)}


def _local(instant: datetime | None, zone: str) -> str | None:
    return instant.astimezone(ZoneInfo(zone)).isoformat() if instant else None


def _text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no windows in the spec"
    lines = []
    for r in rows:
        state = (f"open, closes {r['next_close']}" if r["open"]
                 else f"closed, opens {r['next_open']}")
        units = ", ".join(f"{u['application']}@{u['cluster']}" for u in r["units"]) or "none"
        lines.append(f"{r['name']} ({r['kind']}, '{r['schedule']}' {r['time_zone']}): {state}; "
                     f"units: {units}")
        for h in r.get("held", []):
            waiting = f", {h['waiting'][:7]} waiting" if h["waiting"] else ""
            lines.append(f"  holds {h['application']}@{h['cluster']} at "
                         f"{h['revision'][:7] or 'nothing'}{waiting}")
    return "\n".join(lines)
