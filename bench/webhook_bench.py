"""Webhook benchmark: a one-line commit, a real HTTP webhook POST, the change live on the cluster.

    .venv/bin/python bench/webhook_bench.py --apps 1000 --commits 20 --json out.json

One local cluster, A applications (the Flux benchmark's app, as in
``bench/fleet_bench.py``), 2 workers, beat with a 10-minute interval (so beat
never brings a commit: the webhook does) and ``fleetsync server``. Each round
changes one line (a Service port) of one application, chosen at random,
commits and pushes it, POSTs what GitHub sends for that push (signed with
``X-Hub-Signature-256``, listing the changed file: the server syncs that
application first, then reconciles the cluster) and polls the cluster until
the Service has the new port. Before the next round every unit must be Ready
at the new revision (the fetch reconciles the whole fleet at it). Measured:

    webhook_to_applied_p50_s / _p95_s / _max_s   POST sent -> new port on the cluster
    webhook_answer_p50_ms                         the server's 202
    fleet_converged_p50_s                         POST sent -> every unit Ready at the commit
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import fleet_bench as fb  # noqa: E402
import requests  # noqa: E402

from devtools import fleet as devfleet  # noqa: E402
from scheduler.server.hooks import github_signature  # noqa: E402
from shared.state.redisconn import connect  # noqa: E402
from shared.state.status import StatusStore  # noqa: E402

SECRET = "bench-webhook-secret-" + uuid.uuid4().hex


class WebhookBench(fb.Bench):
    def env(self) -> dict[str, str]:
        return {**super().env(), "BENCH_WEBHOOK_SECRET": SECRET}

    def run(self) -> dict:
        from kubernetes import client, config

        print("Starting 1 cluster and Redis", flush=True)
        self.fleet = devfleet.up(["bench-1"], self.root / "fleet", progress=lambda _: None)
        kubeconfig = self.fleet.clusters["bench-1"]
        fb.create_namespace(kubeconfig)
        repo, bare = fb.make_repo(self.root, self.apps)
        spec = self.root / "fleet.yaml"
        fb.write_spec(spec, bare, self.fleet.clusters, self.apps)
        spec.write_text(spec.read_text().replace(
            "    branch: main\n", "    branch: main\n    webhook: {secretEnv: BENCH_WEBHOOK_SECRET}\n"))
        for i in range(1, self.args.workers + 1):
            self.spawn(f"worker-{i}", "worker", "-n", f"bench-{i}@%h", "-c",
                       str(self.args.concurrency), "-l", "WARNING")
        port = devfleet.free_port()
        self.spawn("server", "server", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        t0 = time.time()
        self.spawn("beat", "beat", "-l", "WARNING")
        self.wait_all(t0, "cold sync", self.args.timeout)
        print(f"  cold sync {time.time() - t0:.1f}s", flush=True)

        api = client.CoreV1Api(config.new_client_from_config(kubeconfig))
        store = StatusStore(connect(self.fleet.redis_url))
        rng = random.Random(self.args.seed)
        applied, answers, converged = [], [], []
        for n in range(1, self.args.commits + 1):
            app = rng.choice(self.apps)
            new_port = 8000 + n
            fb.write_app(repo, app, port=new_port)
            fb.git(repo, "commit", "-q", "-am", f"{app}: port {new_port}")
            fb.git(repo, "push", "-q", "origin", "main")
            sha = fb.git(repo, "rev-parse", "HEAD")
            body = json.dumps({"ref": "refs/heads/main", "after": sha, "commits": [
                {"id": sha, "added": [], "removed": [],
                 "modified": [f"apps/{app}/app.yaml"]}]}).encode()
            sent = time.time()
            answer = requests.post(f"{base}/hooks/github/bench", data=body, timeout=30, headers={
                "Content-Type": "application/json", "X-GitHub-Event": "push",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": github_signature(SECRET, body)})
            answers.append(time.time() - sent)
            assert answer.status_code == 202, answer.text
            while api.read_namespaced_service(app, fb.NAMESPACE).spec.ports[0].port != new_port:
                if time.time() - sent > 120:
                    raise SystemExit(f"{app}: port {new_port} not applied within 120 s")
                time.sleep(0.02)
            applied.append(time.time() - sent)
            converged.append(self.wait_revision(store, sha, sent))
            print(f"  commit {n:2}: {app} applied after {applied[-1]:.2f}s, "
                  f"fleet at it after {converged[-1]:.1f}s", flush=True)
        for proc in self.procs:
            fb._stop(proc)
        devfleet.down(self.root / "fleet", progress=lambda _: None)
        applied.sort()
        return {"apps": self.args.apps, "workers": self.args.workers,
                "concurrency": self.args.concurrency, "commits": self.args.commits,
                "webhook_to_applied_p50_s": _pct(applied, 0.5),
                "webhook_to_applied_p95_s": _pct(applied, 0.95),
                "webhook_to_applied_max_s": round(applied[-1], 3),
                "webhook_answer_p50_ms": round(1000 * _pct(sorted(answers), 0.5), 1),
                "fleet_converged_p50_s": _pct(sorted(converged), 0.5)}

    def wait_revision(self, store: StatusStore, sha: str, since: float) -> float:
        total = len(self.apps)
        while time.time() - since < self.args.timeout:
            statuses = store.all_statuses()
            if sum(s.revision == sha and s.phase == "Ready" for s in statuses) >= total:
                return round(time.time() - since, 2)
            time.sleep(0.5)
        raise SystemExit(f"the fleet did not reach {sha[:8]} in {self.args.timeout:.0f}s")


def _pct(values: list[float], q: float) -> float:
    """The q-quantile, nearest rank (p95 of 20 values is the 19th)."""
    rank = max(1, -(-int(q * 100) * len(values) // 100))
    return round(values[rank - 1], 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.clusters = 1               # what the fleet benchmark's helpers read
    signal.signal(signal.SIGTERM, fb._interrupt)      # SIGTERM stops everything as Ctrl-C
    with tempfile.TemporaryDirectory(prefix="fleetsync-webhook-bench-") as tmp:
        bench = WebhookBench(args, Path(tmp))
        try:
            result = bench.run()
        finally:
            for proc in bench.procs:
                fb._stop(proc)
            devfleet.down(Path(tmp) / "fleet", progress=lambda _: None)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("FLEETSYNC_ALLOW_LOCAL_SOURCES", "true")
    raise SystemExit(main())
