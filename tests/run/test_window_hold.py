"""A closed change window holds a unit: real workers and beat on a real control plane.

The fleet spec has a deny window from 03:00 to 04:00 UTC every day. The workers' and
beat's clock is moved by the test (``FLEETSYNC_TEST_CLOCK_FILE``, an offset in
seconds read at each decision), so the window closes and opens in a moment. Inside
it, a commit is not applied (the unit stays Ready at what it has, saying what waits),
drift is reported but not corrected (unless the window says ``drift: correct``), and
a manual sync with a reason goes through, recorded in history and the audit log.
Outside, the waiting commit is applied at the next tick.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import ROOT, new_redis_db
from tests.support.notify_receiver import Receiver
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

TOMORROW = (datetime.now(timezone.utc) + timedelta(days=1)).replace(
    minute=0, second=0, microsecond=0)
INSIDE = TOMORROW.replace(hour=3, minute=5)       # the deny window: 03:00-04:00 UTC
OUTSIDE = TOMORROW.replace(hour=12)
WINDOW = """windows:
  - name: freeze
    kind: deny
    schedule: "0 3 * * *"
    duration: 1h
    manualSync: {manual}
    drift: {drift}
notifications:
  routes:
    - {{name: hook, provider: webhook, urlEnv: NOTIFY_HOOK_URL, events: [held]}}
"""


def set_clock(path: Path, at: datetime) -> None:
    """The workers' and beat's window clock now reads ``at`` (and runs on from there)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(repr((at - datetime.now(timezone.utc)).total_seconds()))
    os.replace(tmp, path)           # never a torn read: that would be the real clock


def write_spec(stack: Stack, drift: str = "detect", manual: str = "true") -> None:
    stack.write_spec(["dev-1"])
    text = stack.spec.read_text() + WINDOW.format(manual=manual, drift=drift)
    tmp = stack.spec.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, stack.spec)
    write_spec.stamp = max(getattr(write_spec, "stamp", 0.0) + 2, time.time() + 2)
    os.utime(stack.spec, (write_spec.stamp, write_spec.stamp))


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def stack(dev_fleet, redis_url, receiver, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("window")
    clock = tmp / "clock"
    set_clock(clock, OUTSIDE)
    s = Stack(tmp, new_redis_db(redis_url), dev_fleet.clusters,
              env_extra={"FLEETSYNC_TEST_CLOCK_FILE": str(clock),
                         "NOTIFY_HOOK_URL": f"{receiver.url}/hook"})
    s.clock = clock                 # type: ignore[attr-defined]
    write_spec(s)
    s.start_worker("w1")
    s.start_beat()
    s._spawn("notifier", ["notifier"])
    rev = s.repo.head()
    s.wait("Ready", lambda: s.ready_at("dev-1", rev), timeout=90)
    yield s
    s.stop()


def close_window(stack: Stack) -> str:
    """Move the clock inside the window; the revision the unit is held at."""
    rev = stack.status("dev-1")["revision"]
    set_clock(stack.clock, INSIDE)
    stack.wait("held by the window", lambda: stack.status("dev-1")["held_by"] == "freeze",
               timeout=60)
    return rev


def value_on_cluster(stack: Stack, kube_clients) -> str:
    from kubernetes import client

    core = client.CoreV1Api(kube_clients["dev-1"])
    return core.read_namespaced_config_map("settings", stack.namespace).data["value"]


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT,
                          env=stack.env(), capture_output=True, text=True, timeout=180)


def announced(receiver: Receiver, revision: str) -> list[dict]:
    return [r.body for r in receiver.got("/hook")
            if r.body["event"] == "held" and r.body["revision"] == revision]


def test_a_commit_inside_a_deny_window_waits_and_lands_when_it_opens(stack, kube_clients,
                                                                     receiver):
    held_at = close_window(stack)
    new = stack.commit("two", value="two")
    stack.wait("the new revision named as waiting",
               lambda: stack.status("dev-1")["held_revision"] == new, timeout=60)
    status = stack.status("dev-1")
    assert status["phase"] == "Ready" and status["revision"] == held_at
    assert re.search(rf"held by window freeze until \w{{3}} 04:00 UTC; 1 new revision waiting: "
                     rf"{new[:7]}$", status["message"]), status["message"]
    assert status["held_until"] == INSIDE.replace(minute=0, hour=4).isoformat().replace(
        "+00:00", "Z")
    assert value_on_cluster(stack, kube_clients) == "one"
    assert all(e["revision"] != new or e["result"] != "Ready" for e in stack.history("dev-1"))
    (freeze,) = json.loads(cli(stack, "windows", "-o", "json").stdout)["windows"]
    assert freeze["open"] is True and freeze["held"] == [{
        "application": stack.app, "cluster": "dev-1", "revision": held_at, "waiting": new,
        "until": status["held_until"]}]
    (row,) = json.loads(cli(stack, "status", "-o", "json").stdout)
    assert (row["held_by"], row["held_revision"]) == ("freeze", new)
    stack.wait("the held revision announced", lambda: announced(receiver, new), timeout=60)
    for _ in range(3):              # ticks of the held unit: announced once, not per tick
        ticked = stack.status("dev-1")["last_synced_at"]
        stack.wait("a tick", lambda: stack.status("dev-1")["last_synced_at"] != ticked,
                   timeout=60)
    (message,) = announced(receiver, new)
    assert message["text"].startswith(f"{new[:8]} dev-1/{stack.app} held by window freeze until ")

    set_clock(stack.clock, OUTSIDE)
    took = stack.wait("applied once the window opens", lambda: stack.ready_at("dev-1", new),
                      timeout=60)
    print(f"held revision applied {took:.1f} s after the window opened "
          f"(interval {stack.interval} s)")
    assert value_on_cluster(stack, kube_clients) == "two"
    assert stack.status("dev-1")["held_by"] == ""


def test_drift_inside_the_window_is_reported_and_corrected_only_with_drift_correct(
        stack, kube_clients):
    from kubernetes import client

    core = client.CoreV1Api(kube_clients["dev-1"])
    rev = close_window(stack)
    core.patch_namespaced_config_map("settings", stack.namespace, {"data": {"value": "hand"}})

    def drifted() -> bool:
        status = stack.status("dev-1")
        return (status["phase"] == "Drifted" and status["revision"] == rev
                and "held by window freeze" in status["message"]
                and f"ConfigMap/{stack.namespace}/settings" in status["message"])
    stack.wait("Drifted and held", drifted, timeout=60)
    assert value_on_cluster(stack, kube_clients) == "hand"

    write_spec(stack, drift="correct")
    stack.wait("corrected inside the window (drift: correct)",
               lambda: value_on_cluster(stack, kube_clients) != "hand", timeout=60)
    stack.wait("Ready and still held", lambda: stack.ready_at("dev-1", rev)
               and stack.status("dev-1")["held_by"] == "freeze", timeout=60)
    write_spec(stack)
    set_clock(stack.clock, OUTSIDE)
    stack.wait("the hold lifted", lambda: stack.status("dev-1")["held_by"] == "", timeout=60)


def test_a_manual_sync_goes_through_the_window_with_its_reason(stack, kube_clients):
    close_window(stack)
    new = stack.commit("three", value="three")
    stack.wait("the new revision waiting",
               lambda: stack.status("dev-1")["held_revision"] == new, timeout=60)

    refused = cli(stack, "sync", stack.app, "--cluster", "dev-1", "--wait", "--timeout", "60")
    assert refused.returncode == 1
    assert "a manual sync through it needs a reason" in refused.stdout, refused.stdout
    local = cli(stack, "sync", stack.app, "--cluster", "dev-1", "--local")
    assert local.returncode == 1 and "needs a reason" in local.stdout + local.stderr

    write_spec(stack, manual="false")

    def refused_outright() -> bool:
        out = cli(stack, "sync", stack.app, "--cluster", "dev-1", "--wait", "--timeout", "60",
                  "--reason", "hotfix")
        return out.returncode == 1 and "allows no manual sync (manualSync: false)" in out.stdout
    stack.wait("refused: manualSync: false", refused_outright, timeout=90)
    assert value_on_cluster(stack, kube_clients) != "three"

    write_spec(stack)
    reason = "hotfix INC-42\n\x1b[31mred\x1b[0m " + "x" * 400

    def through() -> bool:
        out = cli(stack, "sync", stack.app, "--cluster", "dev-1", "--wait", "--timeout", "60",
                  "--reason", reason, "--by", "alice")
        return out.returncode == 0
    stack.wait("the manual sync through the window", through, timeout=120)
    assert stack.ready_at("dev-1", new) and value_on_cluster(stack, kube_clients) == "three"
    override = next(e for e in stack.history("dev-1") if e["result"] == "Override")
    assert override["by"] == "alice" and override["revision"] == new
    assert override["reason"].startswith("hotfix INC-42 [31mred [0m xxx")
    assert len(override["reason"]) == 300 and "\x1b" not in override["reason"]
    audits = [json.loads(line) for line in (stack.tmp / "w1.log").read_text().splitlines()
              if '"audit"' in line]
    line = next(a for a in audits if a.get("what") == "window override")
    assert line["event"] == "audit" and line["who"] == "alice"
    assert line["units"] == [f"dev-1/{stack.app}"] and line["why"] == override["reason"]
    set_clock(stack.clock, OUTSIDE)
    stack.wait("Ready at the revision let through", lambda: stack.ready_at("dev-1", new),
               timeout=60)
