"""Staleness is visible: unit and beat timestamps as metrics, their alerts, and ``fleetsync status``.

Pure parts (freshness, the table) are tested directly; the heartbeat and the
collector against a real Redis; and end to end, a real ``fleetsync beat`` and a
real worker serving ``/metrics``: while beat runs its heartbeat advances, once it
is stopped the heartbeat stands still, the units go stale in the scraped
metrics, the two alert expressions of ``deploy/prometheus/alerts.yaml`` come
true (evaluated here over the scraped samples), and ``fleetsync status`` says
so. Prometheus itself is not run: a tiny evaluator reads exactly these two
expressions, and fails if their text no longer has the shape it knows.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from devtools.fleet import free_port
from scheduler.commands.status import format_status, freshness, phase_shown
from shared.state import heartbeat, keys
from shared.metrics import ReadinessCollector
from shared.state.status import StatusStore, UnitStatus, now_iso
from tests.conftest import ROOT, start_worker, stop_worker, worker_env

RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
Samples = dict[str, list[tuple[dict[str, str], float]]]


# -- a tiny evaluator for exactly the two staleness alerts ----------------------------

def rule(name: str) -> str:
    rules = yaml.safe_load(RULES.read_text())
    found = [r["expr"] for g in rules["groups"] for r in g["rules"] if r.get("alert") == name]
    assert len(found) == 1, f"{RULES.name}: no single alert {name}"
    return " ".join(found[0].split())


STALE_EXPR = re.compile(r"time\(\) - max by \(cluster, app\) \((\w+)\) > (\d+) \* "
                        r"max by \(cluster, app\) \((\w+)\)")
SILENT_EXPR = re.compile(r"time\(\) - max\((\w+)\) > (\d+) or absent\((\w+)\)")


def stale_units(expr: str, samples: Samples, now: float) -> set[tuple[str, str]]:
    """The (cluster, app) series ``FleetsyncUnitStale``'s expression returns at ``now``."""
    shape = STALE_EXPR.fullmatch(expr)
    assert shape, f"FleetsyncUnitStale's expression changed shape: {expr}"
    success, times, interval = shape[1], float(shape[2]), shape[3]
    last, every = _max_by_unit(samples, success), _max_by_unit(samples, interval)
    return {unit for unit in last.keys() & every.keys() if now - last[unit] > times * every[unit]}


def beat_silent(expr: str, samples: Samples, now: float) -> bool:
    """Whether ``FleetsyncBeatSilent``'s expression returns a sample at ``now``."""
    shape = SILENT_EXPR.fullmatch(expr)
    assert shape and shape[1] == shape[3], f"FleetsyncBeatSilent's expression changed shape: {expr}"
    values = [value for _, value in samples.get(shape[1], [])]
    return not values or now - max(values) > float(shape[2])


def _max_by_unit(samples: Samples, name: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for labels, value in samples.get(name, []):
        unit = (labels["cluster"], labels["app"])
        out[unit] = max(value, out.get(unit, value))
    return out


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


# -- pure -----------------------------------------------------------------------

def test_freshness_is_age_and_stale_past_three_intervals() -> None:
    def ago(seconds: float) -> str:
        return (NOW - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    assert freshness(ago(12), 30, NOW) == (12.0, False)
    assert freshness(ago(90), 30, NOW) == (90.0, False)          # exactly 3 intervals: not yet
    assert freshness(ago(91), 30, NOW) == (91.0, True)
    assert freshness(ago(86400), 0, NOW) == (86400.0, False)     # interval unknown: never stale
    assert freshness("", 30, NOW) == (None, False)               # never synced: Unknown already


def test_the_table_shows_ages_and_marks_stale_units() -> None:
    def row(app: str, synced: str, stale: bool) -> dict:
        return {"cluster": "prod", "app": app, "phase": "Ready", "revision": "0123456789abcdef",
                "message": "3 unchanged", "last_synced_at": synced, "reason": "", "stale": stale}
    table = [row("web", "2025-01-02T03:03:53.000Z", False), row("api", "2025-01-02T00:04:05.000Z", True)]
    lines = format_status(table, width=120, now=NOW).splitlines()
    assert lines[0].split() == ["CLUSTER", "APP", "PHASE", "REVISION", "AGE", "MESSAGE"]
    assert lines[1].split()[:5] == ["prod", "web", "Ready", "01234567", "12s"]
    assert "Unknown (stale since 2025-01-02T00:04:05.000Z)" in lines[2] and " 3h " in lines[2]
    assert phase_shown(table[0]) == "Ready"
    wide = format_status(table, width=120, wide=True, now=NOW).splitlines()
    assert wide[0].split()[:6] == ["CLUSTER", "APP", "PHASE", "REVISION", "SYNCED", "AGE"]


# -- the heartbeat and the collector against a real Redis -----------------------------

@pytest.fixture()
def client(isolated_redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(isolated_redis_url, decode_responses=True)
    yield conn
    conn.close()


def test_heartbeat_writes_at_most_once_a_second_and_outlives_redis_errors(client: redis.Redis) -> None:
    clock = [1000.0]
    beat = heartbeat.Heartbeat(lambda: client, every=1.0, clock=lambda: clock[0])
    assert heartbeat.last_tick(client) is None
    assert beat.tick() and heartbeat.last_tick(client) == 1000.0
    clock[0] = 1000.5
    assert not beat.tick() and heartbeat.last_tick(client) == 1000.0
    clock[0] = 1001.0
    assert beat.tick() and heartbeat.last_tick(client) == 1001.0

    refused = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=2)
    away = heartbeat.Heartbeat(lambda: refused, backoff=10.0, clock=lambda: clock[0])
    assert not away.tick()                      # logged, not raised: beat goes on
    clock[0] += 5
    assert not away.tick()                      # within the backoff: not even tried
    clock[0] += 6
    assert not away.tick()


def test_collector_exposes_last_success_interval_and_beat_tick(client: redis.Redis) -> None:
    store = StatusStore(client)
    store.set_status(UnitStatus("web", "prod", phase="Ready", revision="abc", message="ok", last_synced_at="2025-01-02T03:04:05.000Z",
                                last_success_at="2025-01-02T03:04:05.000Z", interval=30.0))
    store.set_status(UnitStatus("api", "prod", phase="Failed", revision="abc", message="bad", last_synced_at="2025-01-02T03:04:05.000Z",
                                reason="RenderFailed", interval=0.0))
    registry = CollectorRegistry()
    registry.register(ReadinessCollector(store.all_statuses, partial(heartbeat.last_tick, client)))

    before = parse(generate_latest(registry).decode())
    assert "fleetsync_beat_last_tick_timestamp_seconds" not in before     # beat never ticked
    assert before["fleetsync_unit_last_success_timestamp_seconds"] == [
        ({"cluster": "prod", "app": "web"}, NOW.timestamp())]             # api never succeeded
    assert before["fleetsync_unit_interval_seconds"] == [({"cluster": "prod", "app": "web"}, 30.0)]
    assert sorted(v for _, v in before["fleetsync_sync_ready"]) == [0.0, 1.0]

    heartbeat.Heartbeat(lambda: client, clock=lambda: 1234.5).tick()
    after = parse(generate_latest(registry).decode())
    assert after["fleetsync_beat_last_tick_timestamp_seconds"] == [({}, 1234.5)]


def test_a_scrape_without_redis_exposes_no_fleet_state_and_does_not_fail() -> None:
    refused = StatusStore(redis.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True,
                                               socket_connect_timeout=2))
    registry = CollectorRegistry()
    registry.register(ReadinessCollector(refused.all_statuses,
                                         partial(heartbeat.last_tick, refused.client)))
    samples = parse(generate_latest(registry).decode())
    assert not [name for name in samples if name.startswith("fleetsync_")]


def test_cli_reports_stale_units_with_their_age(client: redis.Redis, isolated_redis_url: str) -> None:
    store = StatusStore(client)
    now = time.time()
    store.set_status(UnitStatus("web", "prod", phase="Ready", revision="abc", message="ok", last_synced_at=now_iso(now - 600),
                                last_success_at=now_iso(now - 600), interval=60.0))
    store.set_status(UnitStatus("web", "staging", phase="Ready", revision="abc", message="ok", last_synced_at=now_iso(now - 10),
                                last_success_at=now_iso(now - 10), interval=60.0))
    table = fleetsync_status(isolated_redis_url).splitlines()
    prod = next(line for line in table if line.startswith("prod "))
    staging = next(line for line in table if line.startswith("staging "))
    assert f"Unknown (stale since {now_iso(now - 600)})" in prod and " 10m " in prod
    assert " Ready " in staging and "stale" not in staging
    rows = {r["cluster"]: r for r in json.loads(fleetsync_status(isolated_redis_url, "-o", "json"))}
    assert rows["prod"]["stale"] is True and rows["prod"]["phase"] == "Ready"
    assert rows["staging"]["stale"] is False and 10 <= rows["staging"]["age_s"] < 60
    assert set(rows["prod"]) == {"app", "cluster", "phase", "revision", "message", "last_synced_at",
                                 "age_s", "stale",
                                 "held_by", "held_until", "held_revision"}


def fleetsync_status(url: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "status", *args], cwd=ROOT,
                          env=worker_env(url, COLUMNS="200"), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- end to end: beat stopped, stale units reported ----------------------------------

SPEC = """\
sources:
  - name: platform
    url: file:///srv/gitops.git
    branch: main
    interval: 1m
clusters:
  - {name: prod, labels: {env: prod}, interval: 1s}
  - {name: staging, labels: {env: prod}, interval: 1s}
applications:
  - {name: web, source: platform, path: "clusters/${cluster_name}", clusters: {matchLabels: {env: prod}}}
"""


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = check()
        except OSError:          # the metrics server is not up yet
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return parse(response.read().decode())


BEAT_METRIC = "fleetsync_beat_last_tick_timestamp_seconds"


def beat_value(samples: Samples) -> float | None:
    values = [value for _, value in samples.get(BEAT_METRIC, [])]
    return max(values) if values else None


def start_beat(url: str, spec: Path, log: Path) -> subprocess.Popen:
    """``fleetsync beat`` as operators run it, with the project's FleetScheduler."""
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "scheduler.cli", "beat", "-l", "INFO"],
                                cwd=spec.parent, env=worker_env(url, FLEETSYNC_FLEET=str(spec)),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_beat_stopped_stale_units_reported(isolated_redis_url: str, tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC)
    port = free_port()
    # A worker that serves /metrics and consumes none of the queues beat fills: the
    # statuses below are the only ones, as if the workers had reconciled each unit.
    worker = start_worker(isolated_redis_url, "metrics", queues="fleetsync-test-idle",
                          FLEETSYNC_METRICS_PORT=str(port), FLEETSYNC_FLEET=str(spec))
    beat = None
    try:
        silent, stale = rule("FleetsyncBeatSilent"), rule("FleetsyncUnitStale")
        first = wait_for("the worker's /metrics", lambda: scrape(port))
        assert beat_value(first) is None and beat_silent(silent, first, time.time())   # absent()

        beat = start_beat(isolated_redis_url, spec, tmp_path / "beat.log")
        ticked = wait_for("beat's first tick in the metrics", lambda: beat_value(scrape(port)))
        wait_for("beat's tick to advance", lambda: (beat_value(scrape(port)) or 0) > ticked)
        assert beat.poll() is None, (tmp_path / "beat.log").read_text()
        running = scrape(port)
        assert not beat_silent(silent, running, time.time())

        store = StatusStore(redis.Redis.from_url(isolated_redis_url, decode_responses=True))
        done = time.time()
        for cluster, interval in (("prod", 1.0), ("staging", 1.0), ("dev", 3600.0)):
            store.set_status(UnitStatus("web", cluster, phase="Ready", revision="abc", message="3 unchanged", last_synced_at=now_iso(done),
                                        last_success_at=now_iso(done), interval=interval))
        assert not stale_units(stale, scrape(port), done + 1.0)         # fresh when written

        stop(beat)
        stopped_at = beat_value(scrape(port))
        assert stopped_at is not None
        # The heartbeat stands still: well past three of its periods, it has not moved.
        wait_for("3s after beat's last tick", lambda: time.time() > stopped_at + 3)
        after = scrape(port)
        assert beat_value(after) == stopped_at
        # Units of 1s clusters are not reconciled for 3 intervals: stale, in the metrics ...
        late = wait_for("the 1s units to go stale",
                        lambda: stale_units(stale, scrape(port), time.time()) or None)
        assert late == {("prod", "web"), ("staging", "web")}            # dev's interval is 1h
        # ... and beat is silent: what Prometheus evaluates two minutes after the last tick,
        # the value being frozen (shown above).
        assert not beat_silent(silent, after, time.time())
        assert beat_silent(silent, after, stopped_at + 121)
        # ... and in `fleetsync status`.
        rows = {r["cluster"]: r for r in json.loads(fleetsync_status(isolated_redis_url, "-o", "json"))}
        assert {c for c, r in rows.items() if r["stale"]} == {"prod", "staging"}
        table = fleetsync_status(isolated_redis_url)
        assert table.count("Unknown (stale since ") == 2, table

        if shutil.which("promtool"):
            proc = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                                  text=True, timeout=60)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        if beat is not None and beat.poll() is None:
            stop(beat)
        stop_worker(worker)
