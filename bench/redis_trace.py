"""Which Redis commands a cold unit costs, and on which keys: the fleet benchmark's cold
sync under Redis ``MONITOR``.

    .venv/bin/python bench/redis_trace.py --clusters 1 --apps 50 --workers 2 \\
        --out bench/results/redis_trace.md

Runs ``fleet_bench``'s cold sync (nothing after it) with one ``MONITOR`` connection
open, and counts every command Redis ran, those that scripts ran included (marked
``lua``), by command and key pattern: unit names, run ids, hashes and task ids are
replaced by placeholders, so that each row is one call site of fleetsync, kombu or
Celery (``fleetsync:run:<unit>:<id>`` is the protocol's run record,
``unacked`` and ``_kombu.*`` the broker, ``/0.celeryev/*`` Celery's events).
The benchmark's own polling (status HMGETs, SMEMBERS, INFO) is left out. A
script's call counts once for ``EVALSHA`` and once for each command it runs, as
Redis' own ``total_commands_processed`` counts them. ``MONITOR`` slows Redis, so
this is for the breakdown; ``bench/fleet_bench.py`` gives the figure per unit.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PLACEHOLDERS = (
    (re.compile(r"c\d{4}/c\d{4}-app-\d{4}"), "<unit>"),
    (re.compile(r"c\d{4}-app-\d{4}"), "<app>"),
    (re.compile(r"\bc\d{4}\b"), "<cluster>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<task id>"),
    (re.compile(r"[0-9a-f]{32,}"), "<hex>"),
    (re.compile(r"[0-9a-f]{16}"), "<hash>"),
)


def pattern(text: str) -> str:
    for regex, name in PLACEHOLDERS:
        text = regex.sub(name, text)
    return text


def is_polling(words: list[str]) -> bool:
    """The benchmark's own reads (``fleet_bench.Bench.ready_since``, ``lock_waits``)."""
    name, key = words[0].upper(), (words[1] if len(words) > 1 else "")
    return (name == "INFO" or (name == "HMGET" and "last_synced_at" in words)
            or (name == "SMEMBERS" and key == "fleetsync:units")
            or (name == "HGETALL" and key.startswith("fleetsync:status:"))
            or (name == "LRANGE" and key.startswith("fleetsync:history:")))


def site(entry: dict[str, Any]) -> tuple[str, str, str]:
    words = entry["command"].split(" ")
    name = words[0].upper()
    key = words[1] if len(words) > 1 else ""
    if name in ("EVALSHA", "EVAL"):
        key = f"{words[1][:8]} {words[3] if len(words) > 3 else ''}"
    return ("lua" if entry.get("client_type") == "lua" else "", name, pattern(key)[:90])


def breakdown(entries: list[dict[str, Any]], units: int) -> str:
    sites: collections.Counter[tuple[str, str, str]] = collections.Counter()
    for entry in entries:
        words = entry["command"].split(" ")
        if not is_polling(words):
            sites[site(entry)] += 1
    total = sum(sites.values())
    lines = [f"{total / units:.1f} commands per cold unit ({total} for {units} units), "
             "by call site:", "", "| per unit | from | command | key |", "|---|---|---|---|"]
    for (origin, name, key), count in sites.most_common():
        if count / units >= 0.05:
            lines.append(f"| {count / units:.2f} | {origin or 'client'} | {name} | `{key}` |")
    return "\n".join(lines)


def traced_cold_sync(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    import fleet_bench
    import redis

    entries: list[dict[str, Any]] = []

    class Traced(fleet_bench.Bench):
        def cold_sync(self, sampler: Any) -> None:
            client = redis.Redis.from_url(self.fleet.redis_url)
            stop, listening = threading.Event(), threading.Event()

            def listen() -> None:
                with client.monitor() as monitor:
                    listening.set()
                    for entry in monitor.listen():
                        if stop.is_set():
                            return
                        entries.append(entry)

            thread = threading.Thread(target=listen, daemon=True)
            thread.start()
            listening.wait(10)
            super().cold_sync(sampler)
            stop.set()
            client.ping()                   # one more line, for the monitor to see stop
            thread.join(10)
            raise _Done

    os.environ["FLEETSYNC_REDIS_URL"] = f"redis://127.0.0.1:{fleet_bench.devfleet.free_port()}/0"
    bench = Traced(args, work)
    try:
        bench.run()
    except _Done:
        pass
    finally:
        for proc in bench.procs:
            fleet_bench._stop(proc)
        fleet_bench.devfleet.down(work / "fleet", progress=lambda _: None)
    return entries


class _Done(Exception):
    pass


def main() -> int:
    import fleet_bench

    command = "bench/redis_trace.py " + " ".join(sys.argv[1:])
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--out", type=Path)
    known, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0], "--skip-kubectl", "--skip-limit", *rest]
    args = fleet_bench.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetsync-redis-trace-") as tmp:
        started = time.time()
        entries = traced_cold_sync(args, Path(tmp))
    text = f"Command: `{command}`\n\n{breakdown(entries, args.clusters * args.apps)}\n"
    print(text, f"\n({time.time() - started:.0f} s)")
    if args.json:
        args.json.write_text(__import__("json").dumps(entries, default=str))
    if known.out:
        known.out.write_text("# Redis commands of a cold unit, by call site\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
