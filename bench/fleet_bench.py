"""Fleet benchmark: C clusters x A applications, real workers, beat, Redis and apiservers.

    .venv/bin/python bench/fleet_bench.py --clusters 1 --apps 1000 --workers 2 --json out.json
    .venv/bin/python bench/fleet_bench.py --clusters 1000 --apps 3 --apiservers 4 --skip-kubectl

Clusters, applications, repository and spec are described in ``fleet_layout``
(C simulated clusters on ``--apiservers`` real ones, A apps of their own each).
With ``--replicas N`` the Deployment has N replicas and the apiservers run
workloads (controllers, scheduler, kwok with 3 fake Nodes). Measured:

    cold_sync_s             start of beat until every sync unit is Ready
    limit_cold_s            the same objects server-side applied to a fresh apiserver by one
                            process with --limit-threads threads (the apiserver's own limit)
    cold_vs_limit           cold_sync_s / limit_cold_s
    limit_validated_s       the same with validate-all-first and an inventory, at their
                            cheapest: every object dry-run, then applied, then one inventory
                            ConfigMap created per app, and nothing else (no GET, no Redis)
    validated_vs_limit      limit_validated_s / limit_cold_s
    cold_vs_validated       cold_sync_s / limit_validated_s
    cold_redis_commands_per_unit
                            Redis commands per unit in the cold sync (the broker's included,
                            the benchmark's own polling not; cold_redis_commands_by_name:
                            per unit, by command, the polling's HMGETs included)
    cold_requests_per_app   API requests per unit in the cold sync, from the apiservers' own
                            apiserver_request_total (cold_requests_by_verb: by verb and resource)
    noop_pass_s             one reconcile of the whole fleet with nothing changed
    noop_changed_objects    objects (bench namespace, inventories) whose resourceVersion moved
                            during that pass, from the apiservers (must be 0)
    noop_requests_per_app   API requests per unit in that pass, from the apiservers' own
                            apiserver_request_total: less the benchmark's own reads and the
                            apiservers' background rate measured just before the pass
    limit_list_s            one label-selected LIST per kind of every object (a bulk read)
    noop_vs_list            noop_pass_s / limit_list_s
    noop_writes, noop_history_requests_per_app
                            the same figures from fleetsync's history entries, when present
    commit_to_applied_s     a one-line change committed to one app until it is live
    kubectl_loop_s          the same apps applied to a fresh cluster by a loop of
                            `kubectl apply --server-side`
    beat_*                  beat's ticks and CPU (whole process from /proc; per tick from
                            the beat thread's clock, see beat_probe)
    redis_bytes_per_unit    Redis used_memory after the cold sync less before, per unit
    worker_rss_mb, worker_pss_mb
                            peak of the largest worker's process tree (PSS shares forked pages)

Every figure comes with the load average (1, 5, 15 min) when it was taken.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import fresh_cluster  # noqa: E402
import kubeapi  # noqa: E402
from devtools import fleet as devfleet  # noqa: E402
from fleet_layout import (NAMESPACE, Layout, app_objects, create_namespace, git,  # noqa: E402
                          layout, make_repo, write_app, write_fleet_spec, write_spec)
from procstat import (MemorySampler, cpu_delta, cpu_seconds, cpu_split,  # noqa: E402
                      load_average, stop)
from shared.state import keys  # noqa: E402
from shared.state.redisconn import connect  # noqa: E402
from shared.state.status import StatusStore  # noqa: E402

# Also what the webhook and worker memory benchmarks take from here.
__all__ = ["app_objects", "create_namespace", "git", "make_repo", "main", "write_app", "write_spec"]


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.procs: list[subprocess.Popen] = []
        self.own_commands = 0
        self.result: dict = {}
        self.layout: Layout | None = None
        self.apps = [f"app-{i:04d}" for i in range(args.apps)]    # one shared set (subclasses)

    @property
    def plan(self) -> Layout:
        assert self.layout is not None, "run() lays the fleet out first"
        return self.layout

    def note(self, key: str, value: object) -> None:
        """Record a figure, and the load average beside it."""
        self.result[key] = value
        self.result.setdefault("load_average", {})[key] = load_average()

    def beat_stats(self) -> dict:
        try:
            return json.loads((self.root / "beat-stats.json").read_text())
        except (OSError, ValueError):
            return {}

    def env(self) -> dict[str, str]:
        return {**os.environ, "FLEETSYNC_REDIS_URL": self.fleet.redis_url,
                "FLEETSYNC_FLEET": str(self.root / "fleet.yaml"),
                "FLEETSYNC_CACHE_DIR": str(self.root / "cache"), "FLEETSYNC_LOG_LEVEL": "WARNING",
                "FLEETSYNC_ALLOW_LOCAL_SOURCES": "true",
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")])}

    def spawn(self, name: str, *argv: str, script: Path | None = None) -> subprocess.Popen:
        """``fleetsync ARGV`` (or ``python SCRIPT ARGV``) in a session of its own."""
        head = [str(script)] if script else ["-m", "scheduler.cli"]
        log = open(self.root / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, *head, *argv], cwd=ROOT, env=self.env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def ready_since(self, since: float) -> int:
        """Units synced since ``since`` and Ready: two fields of each status, in one
        pipeline (the poll of a cold sync shares the machine with what it measures)."""
        client = connect(self.fleet.redis_url)
        units = list(client.smembers(keys.UNITS))
        pipe = client.pipeline(transaction=False)
        for unit in units:
            pipe.hmget(keys.status(unit), "phase", "last_synced_at")
        rows = pipe.execute() if units else []
        self.own_commands += 1 + len(units)
        return sum(1 for phase, synced in rows
                   if phase == "Ready" and synced and _ts(synced) >= since)

    def units_done(self, since: float, count_writes: bool = False) -> tuple[int, int, int, int]:
        """(units synced since ``since`` and Ready, writes, requests, units whose latest
        history entry is from this pass) over the whole fleet, from fleetsync's records."""
        if not count_writes:
            return self.ready_since(since), 0, 0, 0
        store = StatusStore(connect(self.fleet.redis_url))
        done = writes = requests = entries = 0
        statuses = store.all_statuses()
        self.own_commands += 1 + len(statuses)        # SMEMBERS, then HGETALL per unit
        for status in statuses:
            if status.phase == "Ready" and status.last_synced_at and _ts(status.last_synced_at) >= since:
                done += 1
                if count_writes:
                    self.own_commands += 1
                    history = store.history(status.app, status.cluster, limit=1)
                    if history and _ts(history[0].get("finished_at") or history[0].get("at")
                                       or status.last_synced_at) >= since:
                        entries += 1
                        writes += history[0].get("writes") or 0
                        requests += history[0].get("requests") or 0
        return done, writes, requests, entries

    def lock_waits(self) -> list[float]:
        """Request-to-lock time of the latest sync of every unit."""
        store = StatusStore(connect(self.fleet.redis_url))
        waits = []
        for status in store.all_statuses():
            entries = store.history(status.app, status.cluster, limit=1)
            if entries and entries[0].get("lock_wait_s") is not None:
                waits.append(entries[0]["lock_wait_s"])
        return sorted(waits)

    def redis_commands(self) -> int:
        """Commands Redis processed (scripts' commands included), less this benchmark's own
        polling, so that the figure is fleetsync's alone."""
        self.own_commands += 1
        total = int(connect(self.fleet.redis_url).info("stats")["total_commands_processed"])
        return total - self.own_commands

    def redis_command_counts(self) -> dict[str, int]:
        """Calls per Redis command so far (INFO commandstats)."""
        self.own_commands += 1
        stats = connect(self.fleet.redis_url).info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def redis_memory(self) -> int:
        self.own_commands += 1
        return int(connect(self.fleet.redis_url).info("memory")["used_memory"])

    def wait_all(self, since: float, what: str, timeout: float) -> float:
        total = (self.layout.units if self.layout
                 else len(self.apps) * getattr(self.args, "clusters", 1))
        every = 0.5 if total <= 1000 else 1.0         # polling 3,000 statuses costs CPU too
        started, last = time.monotonic(), -1
        while time.monotonic() - started < timeout:
            done = self.units_done(since)[0]
            if done != last:
                print(f"  {what}: {done}/{total} units", flush=True)
                last = done
            if done >= total:
                return time.monotonic() - started
            time.sleep(every)
        raise SystemExit(f"{what}: only {last}/{total} units after {timeout:.0f}s (logs in {self.root})")

    def run(self) -> dict:
        args = self.args
        self.code = code_version()
        servers = [f"api-{i}" for i in range(1, (args.apiservers or args.clusters) + 1)]
        print(f"Starting {len(servers)} apiserver(s) for {args.clusters} cluster(s), and Redis",
              flush=True)
        self.fleet = devfleet.up(servers, self.root / "fleet", progress=lambda _: None,
                                 workloads=args.replicas > 0)
        self.apis = {name: kubeapi.Api(path) for name, path in self.fleet.clusters.items()}
        for api in self.apis.values():
            api.ensure_namespace(NAMESPACE)
        self.layout = layout(self.root, self.fleet.clusters, args.clusters, args.apps)
        repo, bare = make_repo(self.root, self.plan.all_apps(), args.replicas)
        write_fleet_spec(self.root / "fleet.yaml", bare, self.plan)
        workers = [self.spawn(f"worker-{i}", "worker", "-n",
                              f"bench-{i}@%h", "-c", str(args.concurrency), "-l", "WARNING")
                   for i in range(1, args.workers + 1)]
        sampler = MemorySampler([w.pid for w in workers])
        sampler.start()
        time.sleep(2)
        sampler.sample()
        self.note("worker_idle_rss_mb", round(sampler.last_rss_kb / 1024, 1))
        self.result["worker_idle_pss_mb"] = round(sampler.last_pss_kb / 1024, 1)
        self.cold_sync(sampler)
        self.noop_pass()
        self.commit_to_applied(repo)
        sampler.stop.set()
        sampler.sample()
        self.note("worker_rss_mb", round(sampler.peak_rss_kb / 1024, 1))
        self.result["worker_pss_mb"] = round(sampler.peak_pss_kb / 1024, 1)
        self.beat_figures()
        for proc in self.procs:
            _stop(proc)
        devfleet.down(self.root / "fleet", progress=lambda _: None)
        if not args.skip_limit:
            print("The apiserver's own limit on a fresh apiserver", flush=True)
            self.limit()
        if not args.skip_kubectl:
            print("kubectl loop on a fresh cluster", flush=True)
            self.kubectl_loop(repo)
        return self.summary()

    def cold_sync(self, sampler: MemorySampler) -> None:
        self.redis_before = self.redis_memory()
        print("Cold sync (beat's first tick)", flush=True)
        workers = [p.pid for p in self.procs]
        apis = list(self.apis.values())
        counts0 = [api.request_counts() for api in apis]
        commands0, by_command0 = self.redis_commands(), self.redis_command_counts()
        cpu0 = cpu_split(self.fleet.processes, {"workers": workers})
        t0 = time.time()
        self.beat = self.spawn("beat", str(self.root / "beat-stats.json"), "-l", "WARNING",
                               script=ROOT / "bench" / "beat_probe.py")
        self.wait_all(t0, "cold sync", self.args.timeout)
        self.note("cold_sync_s", round(time.time() - t0, 2))
        self.result["cold_redis_commands_per_unit"] = round(
            (self.redis_commands() - commands0) / self.plan.units, 1)
        by_command = {name: round((n - by_command0.get(name, 0)) / self.plan.units, 1)
                      for name, n in self.redis_command_counts().items()}
        self.result["cold_redis_commands_by_name"] = dict(
            sorted(((k, v) for k, v in by_command.items() if v >= 0.5), key=lambda kv: -kv[1]))
        by_verb = kubeapi.by_verb(counts0, [api.request_counts() for api in apis])
        self.result["cold_requests_per_app"] = round(
            (sum(by_verb.values()) - len(apis)) / self.plan.units, 2)   # less our /metrics read
        self.result["cold_requests_by_verb"] = by_verb
        self.result["cold_cpu_s"] = cpu_delta(cpu0, cpu_split(
            self.fleet.processes, {"workers": workers, "beat": [self.beat.pid]}))
        self.beat_cold = (cpu_seconds(self.beat.pid), self.beat_stats().get("ticks") or 0)
        if self.args.replicas > 0:
            self.note("cold_available_s", self.wait_available(t0))
        units = self.plan.units
        self.result["redis_bytes_per_unit"] = round((self.redis_memory() - self.redis_before) / units)
        sampler.sample()
        self.note("worker_after_cold_rss_mb", round(sampler.last_rss_kb / 1024, 1))
        self.result["worker_after_cold_pss_mb"] = round(sampler.last_pss_kb / 1024, 1)
        waits = self.lock_waits()
        for q, name in ((0.5, "p50"), (0.95, "p95"), (1.0, "max")):
            self.result[f"cold_lock_wait_{name}_s"] = _pct(waits, q)

    def noop_pass(self) -> None:
        """One reconcile of every cluster with nothing changed, proven from the apiservers."""
        apis = list(self.apis.values())
        before = kubeapi.snapshot(apis)
        counts0 = [api.request_counts() for api in apis]
        time.sleep(self.args.idle_window)
        counts1 = [api.request_counts() for api in apis]
        background = sum(sum(kubeapi.count_delta(a, b).values()) - 1     # less our /metrics read
                         for a, b in zip(counts0, counts1)) / self.args.idle_window
        print("No-op pass", flush=True)
        commands = self.redis_commands()
        t1 = time.time()
        from shared.celery_app import make_app
        from shared.settings import Settings

        self.celery = make_app(Settings(redis_url=self.fleet.redis_url))
        for name in self.plan.clusters:
            self.celery.send_task("fleetsync.reconcile_cluster", args=[name],
                                  kwargs={"trigger": "api"})
        self.wait_all(t1, "no-op pass", self.args.timeout)
        noop = time.time() - t1
        counts2 = [api.request_counts() for api in apis]
        noop_commands = self.redis_commands() - commands
        after = kubeapi.snapshot(apis)
        units = self.plan.units
        changed, managers = kubeapi.changes(before, after)
        by_verb = kubeapi.by_verb(counts1, counts2)
        raw = sum(by_verb.values()) - len(apis)                        # less our /metrics read
        self.note("noop_pass_s", round(noop, 2))
        self.result["noop_changed_objects"] = len(changed)
        self.result["noop_changed_examples"] = [list(k) for k in changed[:5]]
        self.result["noop_changed_managers"] = sorted(managers)
        self.result["noop_objects_checked"] = len(before)
        self.result["noop_requests_total"] = raw
        self.result["noop_background_requests"] = round(background * noop, 1)
        self.result["noop_requests_per_app"] = round(max(0.0, raw - background * noop) / units, 3)
        self.result["noop_requests_by_verb"] = by_verb
        self.result["noop_redis_commands_per_unit"] = round(noop_commands / units, 1)
        _, writes, requests, entries = self.units_done(t1, count_writes=True)
        if entries:
            self.result["noop_history_entries"] = entries
            self.result["noop_writes"] = writes
            self.result["noop_history_requests_per_app"] = round(requests / entries, 2)
        seconds, count = kubeapi.list_owned(apis)
        self.note("limit_list_s", round(seconds, 3))
        self.result["limit_list_objects"] = count

    def commit_to_applied(self, repo: Path) -> None:
        print("Commit to applied", flush=True)
        cluster = next(iter(self.plan.apps))
        app = self.plan.apps[cluster][0]
        write_app(repo, app, port=8080, replicas=self.args.replicas)
        t2 = time.time()
        git(repo, "commit", "-q", "-am", f"{app}: port 8080")
        git(repo, "push", "-q", "origin", "main")
        self.celery.send_task("fleetsync.sync", args=[app, None], kwargs={"trigger": "webhook"})
        api = self.apis[self.plan.placement[cluster]]
        while _svc_port(api, app) != 8080:
            if time.time() - t2 > 120:
                raise SystemExit("the change was not applied within 120s")
            time.sleep(0.1)
        self.note("commit_to_applied_s", round(time.time() - t2, 2))
        self.celery.close()

    def beat_figures(self) -> None:
        """Beat's CPU: the whole process over the cold round and over the run, and per tick."""
        total, stats = cpu_seconds(self.beat.pid), self.beat_stats()
        ticks, sends = stats.get("ticks") or 0, stats.get("send_ticks") or 0
        cold_cpu, cold_ticks = self.beat_cold
        r = self.result
        r["beat_entries"] = len(self.plan.clusters) + 1      # + the source's fetch
        r["beat_ticks"], r["beat_send_ticks"] = ticks, sends
        r["beat_cpu_cold_s"] = round(cold_cpu, 2)             # start-up and the first round
        self.note("beat_cpu_total_s", round(total, 2))
        if ticks > cold_ticks:        # after the cold sync: ticks that send nothing
            r["beat_idle_cpu_per_tick_ms"] = round((total - cold_cpu) / (ticks - cold_ticks) * 1e3, 3)
        if ticks:
            self.note("beat_tick_cpu_ms", round(stats["tick_cpu_s"] / ticks * 1000, 3))
        if sends:
            self.note("beat_send_tick_cpu_ms", round(stats["send_cpu_s"] / sends * 1000, 3))
            r["beat_round_s"] = round(stats["last_send"] - stats["first_send"], 2)

    def limit(self) -> None:
        seconds, count, cpu = fresh_cluster.limit_cold(
            self.root / "limit-fleet", self.plan.all_apps(), self.args.replicas,
            self.args.limit_threads)
        self.note("limit_cold_s", round(seconds, 2))
        self.result["limit_cpu_s"] = cpu
        self.result["limit_objects"], self.result["limit_threads"] = count, self.args.limit_threads
        seconds, _, cpu = fresh_cluster.limit_cold(
            self.root / "limit-fleet", self.plan.all_apps(), self.args.replicas,
            self.args.limit_threads, validate=True)
        self.note("limit_validated_s", round(seconds, 2))
        self.result["limit_validated_cpu_s"] = cpu

    def summary(self) -> dict:
        r, a = self.result, self.args
        r = {"clusters": a.clusters, "apps": a.apps, "units": self.plan.units,
             "apiservers": len(self.apis), "workers": a.workers, "concurrency": a.concurrency,
             "code": self.code, **r}
        if "limit_cold_s" in r:
            r["cold_vs_limit"] = round(r["cold_sync_s"] / r["limit_cold_s"], 2)
            r["validated_vs_limit"] = round(r["limit_validated_s"] / r["limit_cold_s"], 2)
            r["cold_vs_validated"] = round(r["cold_sync_s"] / r["limit_validated_s"], 2)
        if r.get("limit_list_s"):
            r["noop_vs_list"] = round(r["noop_pass_s"] / r["limit_list_s"], 1)
        if "kubectl_loop_s" in r:
            r["kubectl_vs_fleetsync_cold"] = round(r["kubectl_loop_s"] / r["cold_sync_s"], 1)
        r["load_average"] = r.pop("load_average")
        return r

    def wait_available(self, since: float) -> float:
        """Seconds from ``since`` until every app's Deployment has all replicas available."""
        total, last = self.plan.units, -1
        while time.time() - since < self.args.timeout:
            done = sum(sum((d.get("status") or {}).get("availableReplicas") == self.args.replicas
                           for d in api.items("Deployment", NAMESPACE))
                       for api in self.apis.values())
            if done != last:
                print(f"  available: {done}/{total} Deployments", flush=True)
                last = done
            if done >= total:
                return round(time.time() - since, 2)
            time.sleep(1)
        raise SystemExit(f"only {last}/{total} Deployments available after "
                         f"{self.args.timeout:.0f}s (logs in {self.root})")

    def kubectl_loop(self, repo: Path) -> None:
        seconds = fresh_cluster.kubectl_loop(self.root / "kubectl-fleet", repo, self.plan.all_apps(),
                                             self.args.replicas > 0)
        self.note("kubectl_loop_s", round(seconds, 2))


def code_version() -> str:
    """The commit measured, and the code files changed on top of it (workers run the tree)."""
    head = git(ROOT, "rev-parse", "--short", "HEAD")
    dirty = git(ROOT, "status", "--porcelain", "--", "shared", "workers", "scheduler").splitlines()
    changed = ", ".join(line.split(maxsplit=1)[-1] for line in dirty)
    return head + (f" + changes to {changed}" if changed else "")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


def _svc_port(api: kubeapi.Api, name: str) -> int | None:
    items = [s for s in api.items("Service", NAMESPACE) if s["metadata"]["name"] == name]
    return items[0]["spec"]["ports"][0]["port"] if items else None


def _ts(stamp: str | float) -> float:
    from datetime import datetime

    if isinstance(stamp, (int, float)):
        return float(stamp)
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _stop(proc: subprocess.Popen) -> None:
    stop(proc, wait=20)


class _keep:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        return str(self.path)

    def __exit__(self, *_: object) -> None:
        return None


def _interrupt(*_: object) -> None:
    """SIGTERM stops everything as Ctrl-C does."""
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clusters", type=int, default=1, help="simulated clusters")
    parser.add_argument("--apps", type=int, default=100, help="applications per cluster")
    parser.add_argument("--apiservers", type=int, default=0,
                        help="real apiservers the clusters share round-robin (default: one each)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="pool size of each worker")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--replicas", type=int, default=0,
                        help="replicas per app's Deployment (default 0, Flux's app); above 0 the "
                             "apiservers run controllers, scheduler and kwok Nodes")
    parser.add_argument("--limit-threads", type=int, default=8,
                        help="threads of the apiserver-limit measurement (default 8)")
    parser.add_argument("--idle-window", type=float, default=5.0,
                        help="seconds the apiservers' background request rate is measured")
    parser.add_argument("--skip-kubectl", action="store_true", help="skip the kubectl loop")
    parser.add_argument("--skip-limit", action="store_true",
                        help="skip the apiserver-limit apply on a fresh apiserver")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--work-dir", type=Path, help="keep logs and repos here (default: a temp dir)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    # A Redis of our own (up starts one when nothing answers here): used_memory and the
    # command counts are then fleetsync's alone, and no other fleet's Redis is touched.
    os.environ["FLEETSYNC_REDIS_URL"] = f"redis://127.0.0.1:{devfleet.free_port()}/0"
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="fleetsync-bench-") if not args.work_dir
          else _keep(args.work_dir)) as tmp:
        bench = Bench(args, Path(tmp))
        try:
            result = bench.run()
        finally:
            for proc in bench.procs:
                _stop(proc)
            for state in ("fleet", "limit-fleet", "kubectl-fleet"):
                devfleet.down(Path(tmp) / state, progress=lambda _: None)
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
