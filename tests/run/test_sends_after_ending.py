"""A broker that refuses the sends after a run's ending changes nothing of that ending.

The ending of a run (its outcome, the hand-over of the run parked behind it) is committed
before its follow-up tasks are sent. Here the broker refuses the holder worker's sends (an
error answer, which kombu does not retry): a real redis-server whose ACL takes the
holder's access to the queues away after its run began, and gives it back. The
holder runs the solo pool, so its consumer does not read the queues meanwhile; a second
worker, as another Redis user, serves the parked run. Before the fix the failed send made
the holder "crash" the run that had ended Ready: Failed, a second history entry, and the
parked run it had handed over was never sent.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
import redis

from devtools import fleet as devfleet
from tests.conftest import need
from tests.support.stack import ROOT, Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

QUEUES_REFUSED = "resetkeys ~fleetsync:* ~unacked* ~_kombu* ~celery*"   # no stage queue


class AclServer:
    """A redis-server with two users: ``admin`` (the test, the second worker) and
    ``holder`` (the worker whose sends are refused)."""

    def __init__(self, tmp) -> None:
        binary = shutil.which("redis-server") or need("redis-server", "apt-get install redis-server")
        self.port = devfleet.free_port()
        (tmp / "users.acl").write_text("user admin on >adminpw ~* &* +@all\n"
                                      "user holder on >holderpw ~* &* +@all\n")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp), "--aclfile", str(tmp / "users.acl")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.admin = redis.Redis.from_url(self.url("admin"), decode_responses=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.admin.ping():
                    break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def url(self, user: str) -> str:
        return f"redis://{user}:{user}pw@127.0.0.1:{self.port}/0"

    def refused_sends(self) -> int:
        """How often the holder's publishes to the apply queue were refused."""
        return sum(int(e.get("count", 0)) for e in self.admin.acl_log(100)
                   if e.get("username") == "holder" and e.get("object") == "apply")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def sync(stack: Stack, *extra: str) -> int:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "sync", stack.app,
                           "--cluster", "dev-1", *extra], cwd=ROOT, env=stack.env(),
                          capture_output=True, timeout=200).returncode


def test_a_broker_refusing_the_sends_after_an_ending_changes_nothing_of_it(dev_fleet, tmp_path):
    server = AclServer(tmp_path)
    stack = Stack(tmp_path, server.url("holder"), dev_fleet.clusters)
    unit = f"dev-1/{stack.app}"
    r = server.admin
    try:
        stack.write_many("one", 12)         # an apply that takes a while on the slow wire
        stack.commit("many objects")
        stack.write_spec(["dev-1"])
        stack.start_worker("holder", "--pool", "solo")
        assert sync(stack, "--wait", "--timeout", "120") == 0

        with stack.slow_wire(["dev-1"], delay=2.0):
            stack.write_spec(["dev-1"])
            stack.write_many("two", 12)
            rev2 = stack.commit("value two", value="two", extra=True)
            assert sync(stack) == 0
            holder = ""

            def holding() -> bool:
                nonlocal holder
                holder = r.get(f"fleetsync:running:{unit}") or ""
                return bool(holder and r.get(f"fleetsync:lock:{unit}")
                            and r.hget(f"fleetsync:run:{unit}:{holder}", "revision") == rev2)
            stack.wait("the holder's apply in flight", holding, timeout=90)
            stack.start_worker("other", FLEETSYNC_REDIS_URL=server.url("admin"))
            assert sync(stack) == 0
            stack.wait("a second run parked behind it",
                       lambda: bool(r.get(f"fleetsync:pending:{unit}")), timeout=90)
            parked = r.get(f"fleetsync:pending:{unit}")
            assert r.get(f"fleetsync:running:{unit}") == holder, "parked too late"
        stack.write_spec(["dev-1"])
        r.execute_command("ACL", "SETUSER", "holder", *QUEUES_REFUSED.split())

        stack.wait("the holder's ending, then its send refused", server.refused_sends,
                   timeout=120)
        assert r.hget(f"fleetsync:run:{unit}:{holder}", "phase") == "Ready"
        stack.wait("the send refused again (or the ending rewritten)", lambda: (
            server.refused_sends() >= 3
            or r.hget(f"fleetsync:run:{unit}:{holder}", "phase") != "Ready"), timeout=30)
        r.execute_command("ACL", "SETUSER", "holder", "allkeys")

        stack.wait("the parked run sent and ended", lambda: r.hget(
            f"fleetsync:run:{unit}:{parked}", "state") == "done", timeout=120)
        assert r.hget(f"fleetsync:run:{unit}:{parked}", "phase") == "Ready"
        assert r.hget(f"fleetsync:run:{unit}:{holder}", "phase") == "Ready"
        entries = [e for e in stack.history("dev-1") if e["run_id"] == holder]
        assert [e["result"] for e in entries] == ["Ready"]
        stack.wait("no marker or lock left", lambda: not any(
            r.get(f"fleetsync:{k}:{unit}") for k in ("queued", "pending", "running", "lock")),
            timeout=30)
        assert stack.ready_at("dev-1", rev2)
    finally:
        stack.stop()
        server.stop()
