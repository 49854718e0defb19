"""Preview benchmark: ``fleetsync preview`` of a fleet of 1,000 units, with real workers and apiservers.

    .venv/bin/python bench/preview_bench.py --clusters 10 --apps 100 --apiservers 2 --json out.json

The fleet is the fleet benchmark's (``fleet_layout``: C simulated clusters on
``--apiservers`` real ones, A applications of their own each), synced cold by
beat, then passed once with nothing changed (``fleet_bench.Bench``'s cold sync
and no-op pass, measured the same way). Then three previews run on the workers,
each from ``scheduler.previews.start`` until the report is complete:

    preview_noop_s          a preview of ``main`` itself: every unit unchanged
    preview_one_app_s       a branch changing one application on every cluster (the
                            first application of each: C units change, the rest do not)
    preview_every_app_s     a branch changing every application (every unit changes)
    *_dry_runs, *_requests  dry-runs and API requests fleetsync counted for the preview
    *_api_requests          requests the apiservers counted meanwhile (apiserver_request_total)
    *_writes                non-dry-run writes the apiservers counted meanwhile, but their own
                            lease renewals and events (must be 0)
    *_outcomes              units per outcome

Goal: a one-application change across 1,000 units reported in 5 s or less, and no API
request for a unit that the change leaves alone.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import fleet_bench  # noqa: E402
import kubeapi  # noqa: E402
from devtools import fleet as devfleet  # noqa: E402
from fleet_layout import NAMESPACE, git, layout, make_repo, write_app, write_fleet_spec  # noqa: E402
from procstat import MemorySampler  # noqa: E402
from shared.state import previews  # noqa: E402
from shared.state.redisconn import connect  # noqa: E402

WRITES = ("POST", "PUT", "PATCH", "DELETE", "APPLY")
OWN = ("leases", "events")      # the apiservers' own lease renewals and events


class PreviewBench(fleet_bench.Bench):
    def run(self) -> dict:
        args = self.args
        self.code = fleet_bench.code_version()
        servers = [f"api-{i}" for i in range(1, (args.apiservers or args.clusters) + 1)]
        print(f"Starting {len(servers)} apiserver(s) for {args.clusters} cluster(s)", flush=True)
        self.fleet = devfleet.up(servers, self.root / "fleet", progress=lambda _: None,
                                 workloads=False)
        self.apis = {name: kubeapi.Api(path) for name, path in self.fleet.clusters.items()}
        for api in self.apis.values():
            api.ensure_namespace(NAMESPACE)
        self.layout = layout(self.root, self.fleet.clusters, args.clusters, args.apps)
        repo, _ = make_repo(self.root, self.plan.all_apps())
        write_fleet_spec(self.root / "fleet.yaml", self.root / "repo.git", self.plan)
        workers = [self.spawn(f"worker-{i}", "worker", "-n", f"bench-{i}@%h", "-c",
                              str(args.concurrency), "-l", "WARNING")
                   for i in range(1, args.workers + 1)]
        sampler = MemorySampler([w.pid for w in workers])
        sampler.start()
        self.cold_sync(sampler)
        self.noop_pass()
        sampler.stop.set()
        self.result["units"] = self.plan.units
        self.preview("preview_noop", "main")
        first = [apps[0] for apps in self.plan.apps.values()]
        self.preview("preview_one_app", self.branch(repo, "one-app", first))
        self.preview("preview_every_app", self.branch(repo, "every-app", self.plan.all_apps()))
        return self.result

    def branch(self, repo: Path, name: str, apps: list[str]) -> str:
        git(repo, "checkout", "-q", "-B", name, "main")
        for app in apps:
            write_app(repo, app, port=8080)
        git(repo, "commit", "-q", "-am", f"{name}: port 8080")
        git(repo, "push", "-q", "--force", "origin", name)
        git(repo, "checkout", "-q", "main")
        return name

    def preview(self, label: str, ref: str) -> None:
        from scheduler.previews import start

        print(f"Preview {label} ({ref})", flush=True)
        apis = list(self.apis.values())
        redis = connect(self.fleet.redis_url)
        counts0 = [api.request_counts() for api in apis]
        t0 = time.monotonic()
        pid = start(self.celery, redis, source="bench", ref=ref, requested_by="bench")
        record = self.follow(redis, pid)
        seconds = time.monotonic() - t0
        counts1 = [api.request_counts() for api in apis]
        by_verb = kubeapi.by_verb(counts0, counts1)
        outcomes: dict[str, int] = {}
        for unit in record["units"]:
            outcomes[unit["outcome"]] = outcomes.get(unit["outcome"], 0) + 1
        spent = previews.costs(redis, pid)
        self.note(f"{label}_s", round(seconds, 2))
        self.result[f"{label}_outcomes"] = outcomes
        self.result[f"{label}_dry_runs"] = spent["dry_runs"]
        self.result[f"{label}_requests"] = spent["requests"]
        self.result[f"{label}_api_requests"] = sum(by_verb.values())
        self.result[f"{label}_writes"] = self.writes(counts0, counts1) - spent["dry_runs"]

    def writes(self, before: list[dict], after: list[dict]) -> int:
        """Write verbs the apiservers counted (dry-runs included: the caller subtracts them)."""
        return sum(n for a, b in zip(before, after)
                   for (verb, resource), n in kubeapi.count_delta(a, b).items()
                   if verb in WRITES and resource not in OWN)

    def follow(self, redis: object, pid: str) -> dict:
        deadline, said = time.monotonic() + self.args.timeout, ""
        while time.monotonic() < deadline:
            record = previews.load(redis, pid)
            if record and record["state"] != "running":
                return record
            line = f"  {record['done'] if record else 0}/{record['total'] if record else '?'}"
            if line != said:
                print(line + " clusters", flush=True)
                said = line
            time.sleep(0.05)
        raise SystemExit(f"preview {pid} did not end in {self.args.timeout:.0f} s "
                         f"(logs in {self.root})")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10, help="simulated clusters")
    parser.add_argument("--apps", type=int, default=100, help="applications per cluster")
    parser.add_argument("--apiservers", type=int, default=2,
                        help="real apiservers the clusters share round-robin")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--idle-window", type=float, default=5.0,
                        help="seconds the apiservers' background request rate is measured")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work-dir", type=Path, help="keep logs and repos here")
    args = parser.parse_args()
    args.replicas = 0                  # what the fleet benchmark's cold sync reads
    return args


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, fleet_bench._interrupt)
    import os

    os.environ["FLEETSYNC_REDIS_URL"] = f"redis://127.0.0.1:{devfleet.free_port()}/0"
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="fleetsync-preview-bench-") if not args.work_dir
          else fleet_bench._keep(args.work_dir)) as tmp:
        bench = PreviewBench(args, Path(tmp))
        try:
            result = bench.run()
        finally:
            for proc in bench.procs:
                fleet_bench._stop(proc)
            devfleet.down(Path(tmp) / "fleet", progress=lambda _: None)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
