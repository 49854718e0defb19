"""Render time per application: plain YAML, kustomize (the tutorial), and cache hits.

``cache_hit_ms`` is a hit on entries sealed with the workers' key (AES-GCM, as
workers store them); ``clear_cache_hit_ms`` the same without sealing: the cost of
keeping Secrets out of Redis by sealing, against not caching them at all (a
render every time: ``kustomize_render_ms``).

    .venv/bin/python bench/render_bench.py [--runs 20] [--json OUT]

Needs a Redis for the cache-hit figures: ``FLEETSYNC_REDIS_URL`` or one started
here with ``redis-server`` on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.tutorial import write_tutorial  # noqa: E402
from shared.spec.model import Application, Cluster, Selector  # noqa: E402
from workers.render.engine import render, render_cached  # noqa: E402
from workers.render.cache import RenderCache  # noqa: E402
from workers.sealing import Sealer  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from fleet_bench import app_objects  # noqa: E402
from scratch import scratch_redis  # noqa: E402


def timed(fn, runs: int) -> float:
    fn()                                          # warm up: imports, kustomize version
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1000, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import redis

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        write_tutorial(tree)
        plain = tree / "plain"
        plain.mkdir()
        (plain / "app.yaml").write_text("\n---\n".join(json.dumps(o) for o in app_objects("web")))
        with scratch_redis() as url:
            sealer = Sealer([("bench", os.urandom(32))])
            cache = RenderCache(redis.Redis.from_url(url), 3600, sealer=sealer)
            clear = RenderCache(redis.Redis.from_url(url), 3600)
            cluster = Cluster("production", vars={"replicas": "3"})
            kustomized = Application("tutorial", "src", "clusters/production", Selector(names=("production",)))
            flat = Application("plain", "src", "plain", Selector(names=("production",)))
            result = {
                "plain_render_ms": timed(lambda: render(flat, cluster, tree), args.runs),
                "kustomize_render_ms": timed(lambda: render(kustomized, cluster, tree), args.runs),
                "cache_hit_ms": timed(lambda: render_cached(kustomized, cluster, tree, cache,
                                                            "a" * 40, "src"), args.runs),
                "clear_cache_hit_ms": timed(lambda: render_cached(kustomized, cluster, tree, clear,
                                                                  "b" * 40, "src"), args.runs),
                "runs": args.runs,
            }
    for key, value in result.items():
        print(f"{key:<22} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
