"""Where a cold unit's worker CPU goes: the fleet benchmark's cold sync with the workers profiled.

    .venv/bin/python bench/worker_profile.py --clusters 1 --apps 1000 --workers 2 \\
        --out bench/results/worker_profile.md

Runs ``fleet_bench``'s cold sync (then its no-op pass, unprofiled figures only)
with every worker process under yappi on the CPU clock, all threads (the apply
stage's Kubernetes requests run on a thread pool, which cProfile would miss):
the workers are started through this file (``worker_profile.py probe DIR
<worker options>``), which connects Celery signal handlers before the worker
starts, so the Celery main process and each pool process write their own
profile every two seconds. The profiles taken just after the cold sync are
merged, and each function's own CPU time goes to a part by its file:

    HTTP client         urllib3, http.client (and the socket and ssl calls they make)
    kubernetes client   the official client's ApiClient, models, (de)serialisation
    JSON                json, orjson
    Celery              celery, kombu, billiard, vine (publishing, events, the pool)
    Redis               redis-py
    render              workers/render
    engine              workers/apply
    fleetsync, other    workers/run and the rest of workers/, shared/
    logging, metrics    logging, structlog, prometheus_client

Builtins are not profiled apart: the time of a C function (``socket.recv_into``,
the JSON scanner) is its Python caller's own. A function of no part (the
standard library, yaml...) takes the parts of its callers, in proportion to the
time each caller spent in it: ``yaml`` called from the render stage counts as
render, ``socket`` from redis-py as Redis. The profiler slows the workers
several times over, so the table gives shares; the ms per unit are those shares
of the workers' CPU measured without the profiler in the same command's first,
plain run (``--plain``, whose figures are also written beside ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PARTS = (
    ("profiler", ("/yappi", "/pstats.py", "/marshal", "worker_profile.py")),
    ("HTTP client", ("/urllib3/", "/http/client.py")),
    ("kubernetes client", ("/kubernetes/",)),
    ("JSON", ("/json/", "orjson")),
    ("Celery", ("/kombu/", "/celery/", "/billiard/", "/vine/")),
    ("Redis", ("/redis/",)),
    ("render", ("/workers/render/",)),
    ("engine", ("/workers/apply/",)),
    ("fleetsync, other", ("/workers/", "/shared/")),
    ("logging, metrics", ("/logging/", "/structlog/", "/prometheus_client/")),
)
EVERY = 2.0


# --- in the worker -------------------------------------------------------------

def _dump_forever(out: Path, role: str) -> None:
    import yappi

    path = out / f"{role}-{os.getpid()}.pstat"
    while True:
        time.sleep(EVERY)
        tmp = path.with_name(path.name + ".partial")
        yappi.get_func_stats().save(str(tmp), type="pstat")
        tmp.replace(path)


def _start(out: Path, role: str) -> None:
    import yappi

    yappi.stop()
    yappi.clear_stats()
    yappi.set_clock_type("cpu")
    yappi.start(builtins=False, profile_threads=True)
    threading.Thread(target=_dump_forever, args=(out, role), daemon=True).start()


def probe(argv: list[str]) -> None:
    """``probe DIR <worker options>``: a worker as ``fleetsync worker`` runs it, profiled."""
    from celery import signals
    from celery.bin.celery import main as celery_main

    from shared.tasks_api import STAGE_QUEUES

    out = Path(argv[0])
    signals.worker_ready.connect(lambda **_: _start(out, "main"), weak=False)
    signals.worker_process_init.connect(lambda **_: _start(out, "pool"), weak=False)
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="fleetsync-metrics-"))
    sys.argv = ["celery", "-A", "workers.app", "--quiet", "worker", "-Q", ",".join(STAGE_QUEUES),
                "--without-mingle", "--without-gossip", *argv[1:]]
    celery_main()


# --- the attribution ------------------------------------------------------------

def own_part(filename: str) -> str | None:
    for part, needles in PARTS:
        if any(n in filename for n in needles):
            return part
    return None


def attribute(stats: dict[Any, Any]) -> dict[str, float]:
    """CPU seconds by part: each function's own time, to its part or its callers'."""
    memo: dict[Any, dict[str, float]] = {}

    def shares(func: Any, seen: frozenset[Any]) -> dict[str, float]:
        if func in memo:
            return memo[func]
        part = own_part(func[0])
        if part:
            result = {part: 1.0}
        else:
            callers = stats[func][4] if func in stats else {}
            weights = {c: (v[2] or v[3]) if isinstance(v, tuple) else float(v)
                       for c, v in callers.items() if c not in seen and c in stats}
            total = sum(weights.values())
            result = {}
            for caller, weight in weights.items() if total else ():
                for p, share in shares(caller, seen | {func}).items():
                    result[p] = result.get(p, 0.0) + share * weight / total
            result = result or {"other": 1.0}
        memo[func] = result
        return result

    parts: dict[str, float] = {}
    for func, row in stats.items():
        for part, share in shares(func, frozenset()).items():
            parts[part] = parts.get(part, 0.0) + row[2] * share
    return parts


def load(paths: list[Path]) -> dict[Any, Any]:
    merged = pstats.Stats(str(paths[0]))
    for path in paths[1:]:
        merged.add(str(path))
    return merged.stats  # type: ignore[attr-defined]


def top_functions(stats: dict[Any, Any], count: int = 15) -> list[tuple[float, str]]:
    rows = sorted(((row[2], f"{Path(f[0]).name}:{f[1]} {f[2]}") for f, row in stats.items()
                   if own_part(f[0]) != "profiler"), reverse=True)
    return rows[:count]


# --- the run ---------------------------------------------------------------------

def profiled_bench(args: argparse.Namespace, work: Path, profiles: Path) -> dict[str, Any]:
    import fleet_bench

    class ProfiledBench(fleet_bench.Bench):
        def spawn(self, name: str, *argv: str, script: Path | None = None) -> Any:
            if argv and argv[0] == "worker":
                return super().spawn(name, "probe", str(profiles), *argv[1:],
                                     script=Path(__file__).resolve())
            return super().spawn(name, *argv, script=script)

        def noop_pass(self) -> None:
            time.sleep(EVERY * 2)           # every process has written its cold profile
            cold = profiles.parent / "cold"
            cold.mkdir(exist_ok=True)
            for path in profiles.glob("*.pstat"):
                shutil.copy(path, cold / path.name)
            super().noop_pass()

    os.environ["FLEETSYNC_REDIS_URL"] = f"redis://127.0.0.1:{fleet_bench.devfleet.free_port()}/0"
    bench = ProfiledBench(args, work)
    try:
        return bench.run()
    finally:
        for proc in bench.procs:
            fleet_bench._stop(proc)
        fleet_bench.devfleet.down(work / "fleet", progress=lambda _: None)


def table(result: dict[str, Any], plain: dict[str, Any] | None, parts: dict[str, float],
          main_parts: dict[str, float], top: list[tuple[float, str]], command: str) -> str:
    units = result["units"]
    workers_cpu = (plain or result)["cold_cpu_s"]["workers"]
    profiled = {p: s for p, s in parts.items() if p != "profiler"}
    total = sum(profiled.values())
    lines = [f"Command: `{command}`", "",
             f"Cold sync of {units} units; workers' CPU without the profiler "
             f"{workers_cpu} s ({workers_cpu / units * 1e3:.1f} ms per unit); with it "
             f"{result['cold_cpu_s']['workers']} s, of which the profiles hold {total:.1f} s "
             f"(the Celery main processes {sum(v for p, v in main_parts.items() if p != 'profiler'):.1f} s).",
             "", "| part | share | ms per unit | of which main process |", "|---|---|---|---|"]
    for part, seconds in sorted(profiled.items(), key=lambda kv: -kv[1]):
        share = seconds / total
        main = main_parts.get(part, 0.0) / total
        lines.append(f"| {part} | {share:.1%} | {share * workers_cpu / units * 1e3:.2f} | {main:.1%} |")
    lines += ["", "Top functions by own CPU (profiled seconds, all worker processes):", ""]
    lines += [f"    {seconds:7.2f}  {name}" for seconds, name in top]
    figures = {k: (plain or result).get(k) for k in (
        "cold_sync_s", "cold_cpu_s", "cold_redis_commands_per_unit", "cold_redis_commands_by_name",
        "cold_requests_per_app", "noop_redis_commands_per_unit", "noop_requests_per_app",
        "noop_changed_objects", "worker_pss_mb", "load_average")}
    lines += ["", "Figures of the run without the profiler:" if plain else "Figures of the run:",
              "", "```json", json.dumps(figures, indent=2), "```", ""]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    import fleet_bench

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--out", type=Path)
    extra.add_argument("--keep", type=Path, help="copy the cold sync's profiles (pstats) here")
    extra.add_argument("--plain", action="store_true",
                       help="first run the benchmark without the profiler, for the ms per unit")
    known, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0], "--skip-kubectl", "--skip-limit", *rest]
    args = fleet_bench.parse_args()
    args.out, args.plain, args.keep = known.out, known.plain, known.keep
    return args


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        probe(sys.argv[2:])
        return 0
    command = "bench/worker_profile.py " + " ".join(sys.argv[1:])
    args = parse_args()
    try:
        import yappi  # noqa: F401
    except ImportError:
        print("worker_profile.py needs yappi: .venv/bin/pip install -e '.[bench]'",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fleetsync-profile-") as tmp:
        plain = None
        if args.plain:
            print("Plain run (no profiler)", flush=True)
            plain = profiled_bench_plain(args, Path(tmp) / "plain")
            if args.out:
                args.out.with_suffix(".plain.json").write_text(json.dumps(plain, indent=2))
        profiles = Path(tmp) / "profiles"
        profiles.mkdir()
        print("Profiled run", flush=True)
        result = profiled_bench(args, Path(tmp) / "profiled", profiles)
        cold = sorted((Path(tmp) / "cold").glob("*.pstat"))
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for path in cold:
                shutil.copy(path, args.keep / path.name)
        stats = load(cold)
        main_stats = load([p for p in cold if p.name.startswith("main-")])
        text = table(result, plain, attribute(stats), attribute(main_stats), top_functions(stats),
                     command)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# Worker CPU of a cold unit, by part\n\n" + text)
    return 0


def profiled_bench_plain(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import fleet_bench

    os.environ["FLEETSYNC_REDIS_URL"] = f"redis://127.0.0.1:{fleet_bench.devfleet.free_port()}/0"
    work.mkdir(parents=True)
    bench = fleet_bench.Bench(args, work)
    try:
        return bench.run()
    finally:
        for proc in bench.procs:
            fleet_bench._stop(proc)
        fleet_bench.devfleet.down(work / "fleet", progress=lambda _: None)


if __name__ == "__main__":
    raise SystemExit(main())
