"""Chart render time: the ``helm create`` chart from a Helm repository, with a few values.

``cold_ms``: a render with an empty cache (``helm template`` runs; the archive is
already on the host); ``cache_hit_ms``: the same unit again (sealed entries, as
workers store them); ``fleet_100``: 100 clusters whose values are equal (the
``${replicas}`` variable is the same on each), rendered one after another on an
empty cache: ``helm_runs`` counts the renders that ran helm (must be 1).

    .venv/bin/python bench/helm_bench.py [--runs 10] [--json OUT]

Needs helm (``fleetsync dev build``) and ``redis-server``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from devtools.binaries import find_helm  # noqa: E402
from shared.spec.model import HELM_REPOSITORY, Application, Chart, Cluster, Helm, Selector, Source  # noqa: E402
from workers.render import helm as charts  # noqa: E402
from workers.fetch.helmrepo import ChartRepositories  # noqa: E402
from workers.render.engine import render_unit  # noqa: E402
from workers.render.cache import RenderCache  # noqa: E402
from workers.sealing import Sealer  # noqa: E402
from scratch import scratch_redis  # noqa: E402

VALUES = {"replicaCount": "${replicas}", "image": {"tag": "1.27"},
          "service": {"port": 8080}, "resources": {"limits": {"cpu": "100m", "memory": "128Mi"}}}


def helm_cli(helm: Path, *args: str, cwd: Path) -> None:
    env = {"HOME": str(cwd), "PATH": os.defpath}
    subprocess.run([str(helm), *args], cwd=cwd, env=env, check=True, capture_output=True)


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import redis

    helm = find_helm()
    if helm is None:
        print("helm not found: run `fleetsync dev build` first", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        helm_cli(helm, "create", "web", cwd=tmp)
        (tmp / "repo").mkdir()
        helm_cli(helm, "package", str(tmp / "web"), "-d", str(tmp / "repo"), cwd=tmp)
        http_server, url = serve(tmp / "repo")
        helm_cli(helm, "repo", "index", str(tmp / "repo"), "--url", url, cwd=tmp)
        try:
            with scratch_redis() as redis_url:
                client = redis.Redis.from_url(redis_url)
                cache = RenderCache(client, 3600, sealer=Sealer([("bench", os.urandom(32))]))
                source = Source("charts", url, HELM_REPOSITORY, "", 60.0, insecure=True)
                repos = ChartRepositories(tmp / "cache")
                started = time.perf_counter()
                revision = repos.fetch(source)
                app = Application("web", "charts", "", Selector(match_labels={}), namespace="web",
                                  chart=Chart("web", "0.1.x"), helm=Helm(values=VALUES))
                archive = repos.chart(source, app.chart, revision)      # type: ignore[arg-type]
                fetch_ms = (time.perf_counter() - started) * 1000
                run = charts.Helm(str(helm))

                def render(cluster: Cluster) -> bool:
                    return render_unit(app, cluster, None, cache, revision, "charts", helm=run,
                                       archive=archive).hit

                one = Cluster("prod-1", vars={"replicas": "3"})
                cold, hits = [], []
                for _ in range(args.runs):
                    client.flushdb()
                    begun = time.perf_counter()
                    render(one)
                    cold.append((time.perf_counter() - begun) * 1000)
                    begun = time.perf_counter()
                    render(one)
                    hits.append((time.perf_counter() - begun) * 1000)
                client.flushdb()
                begun = time.perf_counter()
                misses = sum(not render(Cluster(f"c{i}", vars={"replicas": "3"}))
                             for i in range(args.clusters))
                fleet_s = time.perf_counter() - begun
                result = {
                    "helm": charts.version(str(helm)), "objects": len(render_unit(
                        app, one, None, cache, revision, "charts", helm=run, archive=archive).objects),
                    "index_and_chart_download_ms": round(fetch_ms, 1),
                    "cold_ms": round(statistics.median(cold), 1),
                    "cache_hit_ms": round(statistics.median(hits), 2),
                    f"fleet_{args.clusters}": {"seconds": round(fleet_s, 2),
                                               "per_cluster_ms": round(fleet_s * 1000 / args.clusters, 2),
                                               "helm_runs": misses},
                }
        finally:
            http_server.shutdown()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result[f"fleet_{args.clusters}"]["helm_runs"] == 1 else 1   # type: ignore[index]


if __name__ == "__main__":
    raise SystemExit(main())
