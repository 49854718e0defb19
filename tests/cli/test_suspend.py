"""``fleetsync suspend|resume APP [--cluster C]`` through the CLI, against real workers, beat
and two real clusters: a suspended unit is neither fetched, rendered nor applied, and
shows Suspended with who and when; resume syncs it at once."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from tests.conftest import ROOT
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(dev_fleet, redis_url, tmp_path_factory):
    from tests.conftest import new_redis_db

    s = Stack(tmp_path_factory.mktemp("suspend"), new_redis_db(redis_url), dev_fleet.clusters)
    s.write_spec(["dev-1", "dev-2"])
    s.start_worker("w1")
    s.start_beat()
    yield s
    s.stop()


def cli(s: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT, env=s.env(),
                          capture_output=True, text=True, timeout=60)


def test_suspend_and_resume_one_cluster_and_the_whole_application(stack: Stack) -> None:
    first = stack.repo.head()
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} Ready", lambda c=cluster: stack.ready_at(c, first), 60)
    done = cli(stack, "suspend", stack.app, "--cluster", "dev-2", "--by", "alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("suspended by alice at "), done.stdout
    stack.wait("dev-2 Suspended", lambda: stack.status("dev-2")["phase"] == "Suspended")
    status = stack.status("dev-2")
    assert "suspended by alice at 20" in status["message"] and status["revision"] == first
    second = stack.commit("second", value="two")
    stack.wait("dev-1 at the new commit", lambda: stack.ready_at("dev-1", second))
    told = stack.status("dev-2")["last_synced_at"]
    stack.wait("a beat tick that finds dev-2 suspended",
               lambda: stack.status("dev-2")["last_synced_at"] > told)
    assert stack.status("dev-2")["phase"] == "Suspended"
    assert not [e for e in stack.history("dev-2") if e["revision"] == second]
    client = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    assert not list(client.scan_iter(f"fleetsync:rendered:dev-2/{stack.app}:{second}:*"))
    table = cli(stack, "status", "--app", stack.app).stdout
    assert "Suspended" in table
    assert cli(stack, "sync", stack.app, "--cluster", "dev-2", "--wait", "--timeout", "30",
               "-o", "json").returncode == 1           # a sync asked for is not run either
    assert stack.status("dev-2")["revision"] == first

    wrong = cli(stack, "resume", stack.app, "--cluster", "dev-1")
    assert wrong.returncode == 1 and "is not suspended" in wrong.stderr
    done = cli(stack, "resume", stack.app, "--cluster", "dev-2", "--by", "alice")
    assert done.returncode == 0 and "lifted: dev-2 suspended by alice" in done.stdout, done
    stack.wait("dev-2 at the new commit after resume", lambda: stack.ready_at("dev-2", second))

    assert cli(stack, "suspend", stack.app).returncode == 0       # the whole application
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} Suspended", lambda c=cluster: stack.status(c)["phase"] == "Suspended")
    assert "this application" in stack.status("dev-1")["message"]
    alone = cli(stack, "resume", stack.app, "--cluster", "dev-1")
    assert alone.returncode == 1 and "suspended as a whole" in alone.stderr
    third = stack.commit("third", value="three")
    assert cli(stack, "resume", stack.app).returncode == 0
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} at the third commit", lambda c=cluster: stack.ready_at(c, third))
