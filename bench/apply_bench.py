"""What one apply costs: requests, writes and wall time for a four-object application.

Starts its own local control plane (``devtools.fleet.up``), applies one app
(a Deployment scaled to zero, a ServiceAccount, a Service and an Ingress) with a
cold discovery cache, applies it again unchanged (the no-op reconcile, which
must make zero writes), then scales the Deployment by hand and applies once more
(drift correction). Prints a table; ``--json OUT`` also writes the numbers.

    .venv/bin/python bench/apply_bench.py [--noop-runs 5] [--json bench/out/apply.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import fleet as devfleet  # noqa: E402
from workers.apply.discovery import Discovery  # noqa: E402
from workers.apply.engine import ApplyResult, apply_unit  # noqa: E402
from workers.apply.kube import Kube  # noqa: E402
from workers.apply.testing import application, unique, web_app  # noqa: E402


def row(name: str, results: list[tuple[ApplyResult, float]]) -> dict[str, Any]:
    """One table row; with several runs, counts come from the last and time is the median."""
    last = results[-1][0]
    return {"phase": name, "runs": len(results), "requests": last.requests,
            "writes": last.writes, "dry_runs": last.dry_runs,
            "wall_ms": round(statistics.median(t for _, t in results) * 1000, 1),
            "counts": {k: v for k, v in last.counts.items() if v}}


def timed(run: Callable[[], ApplyResult]) -> tuple[ApplyResult, float]:
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def measure(kubeconfig: str, noop_runs: int) -> list[dict[str, Any]]:
    kube = Kube.from_kubeconfig(kubeconfig, name="bench")
    name, ns = unique("bench"), "default"
    app, objects, discovery = application(name), web_app(name, ns, replicas=0), Discovery()
    token = iter(range(1, 10_000))

    def apply() -> ApplyResult:
        return apply_unit(kube, app=app, objects=objects, revision="bench-rev-1",
                          token=next(token), discovery=discovery)

    rows = [row("first apply (cold discovery)", [timed(apply)])]
    noops = [timed(apply) for _ in range(noop_runs)]
    if any(result.writes for result, _ in noops):
        raise SystemExit("a no-op reconcile made writes: " + repr([r.writes for r, _ in noops]))
    rows.append(row("no-op apply", noops))
    kube.merge_patch(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
                     {"spec": {"replicas": 5}})
    rows.append(row("drift correction (scaled to 5)", [timed(apply)]))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'phase':32} {'runs':>4} {'requests':>8} {'writes':>6} {'dry-runs':>8} {'wall ms':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['phase']:32} {r['runs']:>4} {r['requests']:>8} {r['writes']:>6} "
                     f"{r['dry_runs']:>8} {r['wall_ms']:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT", help="also write the numbers to OUT")
    parser.add_argument("--noop-runs", type=int, default=5, help="no-op applies to time")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fleetsync-apply-bench-") as tmp:
        state = devfleet.up(["bench"], Path(tmp), progress=lambda _: None)
        try:
            rows = measure(state.clusters["bench"], args.noop_runs)
        finally:
            devfleet.down(Path(tmp), progress=lambda _: None)
    print(table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"objects": 4, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
