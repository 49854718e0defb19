"""A run parked behind a long lock holder lives as long as the holder holds the lock, and is
handed over when it ends: ``fleetsync sync --wait`` of the parked run reports its outcome.

The holder's apply is made long by a slow wire (tests/support/slowproxy.py) in front of the
real API server, and by many objects; ``FLEETSYNC_LOCK_TTL=3`` makes the parked run's markers
(three lock lifetimes, at least a minute) shorter than the apply. Before the fix the lock
renewal extended only the lock: the parked run's markers expired under the holder, which
then had nobody to hand over, and ``sync --wait`` hung until its timeout.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

from tests.conftest import new_redis_db
from tests.support.stack import ROOT, Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

MARKERS_LIVE = 60.0         # the queued timeout at FLEETSYNC_LOCK_TTL=3: max(60, 3 * 3) s
MANY = 36                   # objects: on the slow wire, an apply of about 90 s


def sync(stack: Stack, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scheduler.cli", "sync", stack.app,
                             "--cluster", "dev-1", *extra], cwd=ROOT, env=stack.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_run_parked_behind_a_long_holder_is_handed_over(dev_fleet, redis_url, tmp_path):
    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters,
                  env_extra={"FLEETSYNC_LOCK_TTL": "3"})
    unit = f"dev-1/{stack.app}"
    r = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        stack.write_many("one", MANY)
        first = stack.commit("many objects")
        stack.write_spec(["dev-1"])
        stack.start_worker("w", "--concurrency", "2")
        assert sync(stack, "--wait", "--timeout", "120").wait(150) == 0
        assert stack.ready_at("dev-1", first)

        with stack.slow_wire(["dev-1"], delay=2.5):
            stack.write_spec(["dev-1"])
            stack.write_many("two", MANY)
            rev2 = stack.commit("every object changes", value="two")
            assert sync(stack).wait(60) == 0
            holder = ""

            def holding() -> bool:
                nonlocal holder
                holder = r.get(f"fleetsync:running:{unit}") or ""
                return bool(holder and r.get(f"fleetsync:lock:{unit}")
                            and r.hget(f"fleetsync:run:{unit}:{holder}", "revision") == rev2)
            stack.wait("the holder's apply in flight", holding, timeout=90)
            waiter = sync(stack, "--wait", "--timeout", "400")
            stack.wait("a second run parked behind it",
                       lambda: bool(r.get(f"fleetsync:pending:{unit}")), timeout=60)
            parked, parked_at = r.get(f"fleetsync:pending:{unit}"), time.time()
        stack.write_spec(["dev-1"])              # the parked run applies on a normal wire

        stack.wait("the holder's run over", lambda: r.hget(
            f"fleetsync:run:{unit}:{holder}", "state") == "done", timeout=300)
        held = float(r.hget(f"fleetsync:run:{unit}:{holder}", "finished_at")) - parked_at
        assert held > MARKERS_LIVE, f"the holder held the lock only {held:.0f} s after parking"
        stack.wait("the parked run handed over and ended", lambda: r.hget(
            f"fleetsync:run:{unit}:{parked}", "state") == "done", timeout=90)
        out, _ = waiter.communicate(timeout=120)
        assert waiter.returncode == 0, out
        assert r.hget(f"fleetsync:run:{unit}:{parked}", "phase") == "Ready"
        assert stack.ready_at("dev-1", rev2)
    finally:
        stack.stop()
