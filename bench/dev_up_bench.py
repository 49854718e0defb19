"""How long `fleetsync dev up` takes to bring N control planes to ready (binaries cached).

    .venv/bin/python bench/dev_up_bench.py --clusters 3 --runs 3 [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from devtools import fleet as devfleet
from devtools.binaries import ensure_binaries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ensure_binaries()
    up_s, down_s = [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            names = [f"bench-{i}" for i in range(1, args.clusters + 1)]
            started = time.monotonic()
            devfleet.up(names, Path(tmp), progress=lambda _: None)
            up_s.append(time.monotonic() - started)
            started = time.monotonic()
            devfleet.down(Path(tmp), progress=lambda _: None)
            down_s.append(time.monotonic() - started)
        print(f"run {run + 1}: up {up_s[-1]:.2f}s  down {down_s[-1]:.2f}s", flush=True)
    result = {"clusters": args.clusters, "runs": args.runs,
              "up_median_s": round(statistics.median(up_s), 2), "up_max_s": round(max(up_s), 2),
              "down_median_s": round(statistics.median(down_s), 2)}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
