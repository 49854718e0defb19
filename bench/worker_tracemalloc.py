"""What grows with units in a worker: tracemalloc snapshots of a small and a large fleet, diffed.

    .venv/bin/python bench/worker_tracemalloc.py --small 10x3 --large 300x3 --apiservers 2 \\
        --out bench/results/worker_tracemalloc.md

Runs ``fleet_bench``'s cold sync and no-op pass twice, on ``--small`` and on
``--large`` (CLUSTERSxAPPS, simulated clusters on ``--apiservers`` real ones),
with each worker process tracing its allocations from when it starts serving
(``tracemalloc`` with 12 frames; the workers are started through this file,
``worker_tracemalloc.py probe DIR <worker options>``, which connects Celery
signal handlers first). After the no-op pass every worker process writes a
snapshot; the pool process holding the most traced memory of each run is
compared, large against small, by allocation site (file:line), and the largest
growths are shown with the fleetsync frames that led to them. The workers' PSS
of both runs is reported beside it (fleet_bench's ``worker_pss_mb``, sampled
without the tracing's own cost in a plain run when ``--plain`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import re
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FRAMES = 12
OWN = ("/workers/", "/shared/", "/scheduler/")


# --- in the worker -------------------------------------------------------------

def _serve_snapshots(out: Path, role: str) -> None:
    """Write a snapshot whenever ``out/request`` names a new label."""
    done = ""
    while True:
        time.sleep(0.5)
        try:
            label = (out / "request").read_text().strip()
        except OSError:
            continue
        if label and label != done:
            path = out / f"{label}-{role}-{os.getpid()}.snap"
            current, peak = tracemalloc.get_traced_memory()
            (out / f"{label}-{role}-{os.getpid()}.json").write_text(json.dumps(
                {"role": role, "traced": current, "peak": peak, **_rollup_kb()}))
            tracemalloc.take_snapshot().dump(str(path) + ".tmp")
            Path(str(path) + ".tmp").replace(path)
            done = label


def _rollup_kb() -> dict[str, int]:
    """This process's PSS and private (USS) memory in kB, from smaps_rollup."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Private_Clean", "Private_Dirty"):
            fields[key] = int(rest.split()[0])
    return {"pss_kb": fields.get("Pss", 0),
            "uss_kb": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
            **_native()}


def _native() -> dict[str, int]:
    """What tracemalloc does not see: open sockets, threads, and glibc's heap (in use and
    free in its arenas, from mallinfo2), in kB."""
    import ctypes

    sockets = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            sockets += os.readlink(fd).startswith("socket:")
        except OSError:
            pass

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return {"sockets": sockets, "threads": threading.active_count(),
            "malloc_used_kb": (info.uordblks + info.hblkhd) // 1024,
            "malloc_free_kb": info.fordblks // 1024}


def _start(out: Path, role: str) -> None:
    tracemalloc.stop()
    tracemalloc.start(FRAMES)
    threading.Thread(target=_serve_snapshots, args=(out, role), daemon=True).start()


def probe(argv: list[str]) -> None:
    """``probe DIR <worker options>``: a worker as ``fleetsync worker`` runs it, traced."""
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


# --- the run ---------------------------------------------------------------------

def traced_run(args: argparse.Namespace, work: Path, label: str, trace: bool) -> tuple[dict, Path]:
    import fleet_bench

    snaps = work / "snapshots"
    snaps.mkdir(parents=True)

    class TracedBench(fleet_bench.Bench):
        def spawn(self, name: str, *argv: str, script: Path | None = None) -> Any:
            if trace and argv and argv[0] == "worker":
                return super().spawn(name, "probe", str(snaps), *argv[1:],
                                     script=Path(__file__).resolve())
            return super().spawn(name, *argv, script=script)

        def commit_to_applied(self, repo: Path) -> None:
            if trace:
                (snaps / "request").write_text(label)
                pools = args.workers * args.concurrency
                deadline = time.monotonic() + 300
                while len(list(snaps.glob(f"{label}-*.snap"))) < pools + args.workers:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"snapshots not written in 300 s ({snaps})")
                    time.sleep(0.5)
            super().commit_to_applied(repo)

    os.environ["FLEETSYNC_REDIS_URL"] = f"redis://127.0.0.1:{fleet_bench.devfleet.free_port()}/0"
    bench = TracedBench(args, work)
    try:
        return bench.run(), snaps
    finally:
        for proc in bench.procs:
            fleet_bench._stop(proc)
        fleet_bench.devfleet.down(work / "fleet", progress=lambda _: None)


def biggest(snaps: Path, label: str) -> tracemalloc.Snapshot:
    """The pool process's snapshot that traces the most memory."""
    loaded = [tracemalloc.Snapshot.load(str(p)) for p in snaps.glob(f"{label}-pool-*.snap")]
    return max(loaded, key=lambda s: sum(t.size for t in s.traces))


def own_frames(trace: tracemalloc.Traceback, count: int = 3) -> str:
    frames = [f for f in reversed(list(trace)) if any(o in f.filename for o in OWN)]
    return " <- ".join(f"{_short(f.filename)}:{f.lineno}" for f in frames[:count]) or "(no fleetsync frame)"


def _short(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    stdlib = re.search(r"/lib/python3\.\d+/(.*)", filename)
    if stdlib:
        return stdlib.group(1)
    for own in OWN:
        if own in filename:
            return own.strip("/") + "/" + filename.split(own, 1)[1]
    return filename


def report(small: tracemalloc.Snapshot, large: tracemalloc.Snapshot, figures: dict[str, dict],
           command: str, top: int = 15) -> str:
    total = {k: sum(t.size for t in s.traces) / 2**20 for k, s in (("small", small), ("large", large))}
    lines = [f"Command: `{command}`", "",
             "| run | units | clusters | worker PSS (MB) | traced in the largest pool process (MB) |",
             "|---|---|---|---|---|"]
    for name in ("small", "large"):
        r = figures[name]
        lines.append(f"| {name} | {r['units']} | {r['clusters']} | {r['worker_pss_mb']} | "
                     f"{total[name]:.1f} |")
    lines += ["", "Per process when the snapshots were taken (after the no-op pass): PSS and "
              "private memory (USS) summed over the main processes and over the pool processes, "
              "and the most traced memory (now, and at its peak since tracing began) of one "
              "pool process:", "",
              "| run | main PSS / USS (MB) | pool PSS / USS (MB) | pool traced now / peak (MB) |",
              "|---|---|---|---|"]
    for name in ("small", "large"):
        rows = figures[name]["processes"]
        main = [r for r in rows if r["role"] == "main"]
        pool = [r for r in rows if r["role"] == "pool"]
        mb = lambda rs, k: sum(r[k] for r in rs) / 1024          # noqa: E731
        lines.append(f"| {name} | {mb(main, 'pss_kb'):.0f} / {mb(main, 'uss_kb'):.0f} | "
                     f"{mb(pool, 'pss_kb'):.0f} / {mb(pool, 'uss_kb'):.0f} | "
                     f"{max(r['traced'] for r in pool) / 2**20:.1f} / "
                     f"{max(r['peak'] for r in pool) / 2**20:.1f} |")
    lines += ["", "What tracemalloc does not see, summed over the pool processes: open sockets, "
              "threads, and glibc's heap in use and free in its arenas (mallinfo2):", "",
              "| run | pool processes | sockets | threads | malloc in use (MB) | malloc free (MB) |",
              "|---|---|---|---|---|---|"]
    for name in ("small", "large"):
        pool = [r for r in figures[name]["processes"] if r["role"] == "pool"]
        total_of = lambda k: sum(r.get(k, 0) for r in pool)          # noqa: E731
        lines.append(f"| {name} | {len(pool)} | {total_of('sockets')} | {total_of('threads')} | "
                     f"{total_of('malloc_used_kb') / 1024:.0f} | "
                     f"{total_of('malloc_free_kb') / 1024:.0f} |")
    lines += ["", f"Largest growths, large less small, by allocation site (top {top}):", "",
              "| growth (KB) | blocks | site | fleetsync frames |", "|---|---|---|---|"]
    by_line = large.compare_to(small, "lineno")
    by_trace: dict[str, tracemalloc.Statistic] = {}
    for stat in large.statistics("traceback"):       # the largest first, per allocating line
        by_trace.setdefault(str(stat.traceback[-1]), stat)   # frames run oldest to newest
    for stat in by_line[:top]:
        frame = stat.traceback[-1]
        site = f"{_short(frame.filename)}:{frame.lineno}"
        full = by_trace.get(str(frame))
        lines.append(f"| {stat.size_diff / 1024:,.0f} | {stat.count_diff:+,} | {site} | "
                     f"{own_frames(full.traceback) if full else ''} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    import fleet_bench

    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--small", default="10x3")
    extra.add_argument("--large", default="300x3")
    extra.add_argument("--out", type=Path)
    known, rest = extra.parse_known_args()
    sys.argv = [sys.argv[0], "--skip-kubectl", "--skip-limit", *rest]
    args = fleet_bench.parse_args()
    args.small, args.large, args.out = known.small, known.large, known.out
    return args


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        probe(sys.argv[2:])
        return 0
    command = "bench/worker_tracemalloc.py " + " ".join(sys.argv[1:])
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # stop as Ctrl-C does: clean up
    args = parse_args()
    figures: dict[str, dict] = {}
    snapshots: dict[str, tracemalloc.Snapshot] = {}
    with tempfile.TemporaryDirectory(prefix="fleetsync-tracemalloc-") as tmp:
        for name in ("small", "large"):
            args.clusters, args.apps = (int(n) for n in getattr(args, name).split("x"))
            print(f"{name}: {args.clusters} clusters x {args.apps} apps", flush=True)
            figures[name], snaps = traced_run(args, Path(tmp) / name, name, trace=True)
            figures[name]["processes"] = [json.loads(p.read_text())
                                          for p in snaps.glob(f"{name}-*.json")]
            snapshots[name] = biggest(snaps, name)
    text = report(snapshots["small"], snapshots["large"], figures, command)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("# Worker memory: what grows with units\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
