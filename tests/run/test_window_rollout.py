"""A rollout wave does not start inside a closed change window, and starts when it opens.

Real workers and beat, two real control planes: ``dev-1`` is wave 1, ``dev-2`` wave 2,
and a deny window holds ``dev-2`` only. The window clock is moved by the test
(``FLEETSYNC_TEST_CLOCK_FILE``). A commit inside the window rolls out to wave 1; wave
2 admits nobody (the rollout record says so) and ``dev-2`` keeps the stable revision;
when the window opens, wave 2 starts and ``dev-2`` turns Ready at the commit.
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from tests.conftest import new_redis_db
from tests.run.test_window_hold import INSIDE, OUTSIDE, set_clock
from tests.support.stack import Stack, configmap

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def commit(s: Stack, value: str) -> str:
    s.repo.write("app/namespace.yaml", json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s.namespace}}))
    s.repo.write("app/config.yaml", configmap("settings", s.namespace, {"value": value}))
    sha = s.repo.commit(f"value {value}")
    s.repo.push()
    return sha


@pytest.fixture(scope="module")
def stack(dev_fleet, redis_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("window-waves")
    clock = tmp / "clock"
    set_clock(clock, OUTSIDE)
    s = Stack(tmp, new_redis_db(redis_url), dev_fleet.clusters,
              app="app" + uuid.uuid4().hex[:6],
              env_extra={"FLEETSYNC_TEST_CLOCK_FILE": str(clock)})
    s.clock = clock                 # type: ignore[attr-defined]
    s.repo.remove("app/deployment.yaml")
    s.first = commit(s, "zero")     # type: ignore[attr-defined]
    lines = ["sources:", "  - name: git", f"    url: {s.repo.bare_url()}", "    branch: main",
             "    interval: 1s", "clusters:"]
    for name in ("dev-1", "dev-2"):
        lines += [f"  - name: {name}", f"    kubeconfig: {s.kubeconfigs[name]}",
                  "    interval: 2s"]
    lines += ["applications:", f"  - name: {s.app}", "    source: git", "    path: app",
              "    clusters: {names: [dev-1, dev-2]}", "    wait: true", "    timeout: 30s",
              "    rollout:", "      waves:", "        - clusters: {names: [dev-1]}",
              "        - clusters: {names: [dev-2]}",
              "windows:", "  - name: site-freeze", "    kind: deny",
              '    schedule: "0 3 * * *"', "    duration: 1h", "    clusters: {names: [dev-2]}"]
    s.spec.write_text("\n".join(lines) + "\n")
    s.start_worker("w1")
    s.start_beat()
    yield s
    s.stop()


def admitted(s: Stack) -> list[str]:
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    return json.loads(client.get(f"fleetsync:rollout:{s.app}") or "{}").get("admitted", [])


def test_a_wave_waits_for_the_window_and_starts_when_it_opens(stack):
    stack.wait("the first rollout Ready on both clusters",
               lambda: all(stack.ready_at(c, stack.first) for c in ("dev-1", "dev-2")),
               timeout=120)
    set_clock(stack.clock, INSIDE)
    stack.wait("dev-2 held", lambda: stack.status("dev-2")["held_by"] == "site-freeze",
               timeout=60)
    new = commit(stack, "one")
    stack.wait("wave 1 Ready at the commit", lambda: stack.ready_at("dev-1", new), timeout=90)
    stack.wait("the rollout at wave 2", lambda: json.loads(redis.Redis.from_url(
        stack.redis_url, decode_responses=True).get(f"fleetsync:rollout:{stack.app}")
        or "{}").get("wave") == 1, timeout=60)
    # a few ticks of the wave's gate: nobody of wave 2 admitted, dev-2 at the stable one
    ticks = stack.status("dev-2")["last_synced_at"]
    stack.wait("dev-2 ticked while held", lambda: stack.status("dev-2")["last_synced_at"]
               != ticks, timeout=60)
    assert admitted(stack) == ["dev-1"]
    status = stack.status("dev-2")
    assert status["revision"] == stack.first and status["held_by"] == "site-freeze"

    set_clock(stack.clock, OUTSIDE)
    took = stack.wait("wave 2 started once the window opened",
                      lambda: stack.ready_at("dev-2", new), timeout=90)
    print(f"wave 2 Ready {took:.1f} s after the window opened")
    assert "dev-2" in admitted(stack)
    assert stack.status("dev-2")["held_by"] == ""
