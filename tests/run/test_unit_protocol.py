"""The sync-unit protocol end to end: real beat, real workers, real apiservers.

Every request leads to a run; every run ends and clears what it held; a fixing
commit reaches every failed cluster within one interval; ``sync --wait`` tells
the truth about the run that served the request.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

from tests.conftest import ROOT, new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

INTERVAL = 4


@pytest.fixture(scope="module")
def stack(dev_fleet, redis_url, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("protocol"), new_redis_db(redis_url), dev_fleet.clusters,
              interval=INTERVAL)
    s.write_spec(["dev-1", "dev-2"])
    s.start_worker("w1")
    s.start_worker("w2")
    s.start_beat()
    rev = s.repo.head()
    for cluster in ("dev-1", "dev-2"):
        s.wait(f"{cluster} Ready", lambda c=cluster: s.ready_at(c, rev), timeout=90)
    yield s
    s.stop()


def _bad_commit(stack: Stack) -> str:
    stack.repo.write("app/config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [unclosed\n")
    sha = stack.repo.commit("broken config")
    stack.repo.push()
    return sha


def _cli(stack: Stack, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *argv], cwd=ROOT,
                          env=stack.env(), capture_output=True, text=True, timeout=timeout)


def _ticks_pass(stack: Stack, ticks: int) -> None:
    """Wait until beat has fetched the source ``ticks`` more times."""
    store = stack.store
    first = store.source_revision("git")[1]
    stack.wait(f"{ticks} beat ticks", lambda: store.source_revision("git")[1]
               >= first + ticks * INTERVAL - 1, timeout=ticks * INTERVAL * 4)


def _protocol_keys(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    found = []
    for pattern in ("queued", "pending", "running", "lock"):
        found += list(client.scan_iter(f"fleetsync:{pattern}:*"))
    return found


def test_a_fixing_commit_reaches_every_failed_cluster_within_one_interval(stack):
    bad = _bad_commit(stack)
    seen: dict[str, dict] = {}

    def failed_at_bad(cluster: str) -> bool:
        seen[cluster] = stack.status(cluster)
        return seen[cluster]["phase"] == "Failed" and seen[cluster]["revision"] == bad
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} Failed at the bad commit", lambda c=cluster: failed_at_bad(c),
                   timeout=60)
    assert "config.yaml" in seen["dev-1"]["message"]
    _ticks_pass(stack, 2)            # beat runs over the failed units: nothing may stick
    fixed = stack.commit("fixed", value="fixed")
    committed = time.monotonic()
    took = {}
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} at the fix", lambda c=cluster: stack.ready_at(c, fixed),
                   timeout=60)
        took[cluster] = time.monotonic() - committed
    assert max(took.values()) <= INTERVAL + 3, took


def test_sync_wait_exits_non_zero_for_a_unit_that_stays_failed(stack):
    bad = _bad_commit(stack)
    stack.wait("dev-1 Failed", lambda: stack.status("dev-1")["revision"] == bad
               and stack.status("dev-1")["phase"] == "Failed", timeout=60)
    proc = _cli(stack, "sync", stack.app, "--cluster", "dev-1", "--wait", "--timeout", "60")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Failed" in proc.stdout and "config.yaml" in proc.stdout
    entries = stack.history("dev-1")
    assert entries[0]["trigger"] == "cli" and entries[0]["result"] == "Failed"


def test_sync_wait_exits_zero_for_a_unit_that_becomes_ready(stack):
    fixed = stack.commit("fixed again", value="again")
    proc = _cli(stack, "sync", stack.app, "--wait", "--timeout", "60")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all("Ready" in line and fixed[:12] in line for line in lines)


def test_sync_wait_timeout_says_what_was_still_running(stack):
    stack.write_spec(["dev-1", "dev-2"], wait="20s")     # health never comes: no controllers
    try:
        proc = _cli(stack, "sync", stack.app, "--cluster", "dev-2", "--wait", "--timeout", "3")
    finally:
        stack.write_spec(["dev-1", "dev-2"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "timed out after 3 s; still running: dev-2" in proc.stderr
    assert "Unknown" in proc.stdout and "still " in proc.stdout


def test_no_marker_or_lock_is_left_once_the_fleet_is_quiet(stack):
    rev = stack.repo.head()
    client = redis.Redis.from_url(stack.redis_url)
    stack.wait("the slow runs of the last test over, every unit Ready", lambda: (
        not list(client.scan_iter("fleetsync:lock:*"))
        and all(stack.ready_at(c, rev) for c in ("dev-1", "dev-2"))), timeout=90)
    for proc in [p for p in stack.procs if "beat" in " ".join(map(str, p.args))]:
        stack.kill(proc)
    stack.wait("every marker and lock released",
               lambda: not _protocol_keys(stack.redis_url), timeout=60)
    for cluster in ("dev-1", "dev-2"):
        assert stack.ready_at(cluster, rev)
