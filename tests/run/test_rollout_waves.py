"""Rollouts in waves end to end: real workers and beat, three real clusters, real health.

``dev-1`` (development) is wave 1, ``dev-2`` (staging) wave 2 with a pause, and a
third bare control plane (production) wave 3. The application is a Namespace
and a ConfigMap (healthy without controllers), with ``wait: true``. The tests
follow one stack in order: the first rollout, a good commit wave by wave, a bad
commit halted at wave 1 and aborted, then pause, promote and resume through the
CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import ROOT
from tests.support.stack import Stack, configmap

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

CLUSTERS = {"dev-1": "development", "dev-2": "staging", "wave-3": "production"}
PAUSE = 3.0


@pytest.fixture(scope="module")
def third_cluster(dev_fleet, tmp_path_factory):
    from devtools import fleet as devfleet

    state_dir = tmp_path_factory.mktemp("wave-fleet")
    state = devfleet.up(["wave-3"], state_dir, progress=lambda _: None, workloads=False)
    yield state.clusters["wave-3"]
    devfleet.down(state_dir, progress=lambda _: None)


@pytest.fixture(scope="module")
def stack(dev_fleet, third_cluster, redis_url, tmp_path_factory):
    from tests.conftest import new_redis_db

    s = Stack(tmp_path_factory.mktemp("waves"), new_redis_db(redis_url),
              {**dev_fleet.clusters, "wave-3": third_cluster},
              app="app" + uuid.uuid4().hex[:6])
    s.repo.remove("app/deployment.yaml")
    s.revisions = [commit(s, "zero")]
    lines = ["sources:", "  - name: git", f"    url: {s.repo.bare_url()}", "    branch: main",
             "    interval: 1s", "clusters:"]
    for name, env in CLUSTERS.items():
        lines += [f"  - name: {name}", f"    kubeconfig: {s.kubeconfigs[name]}",
                  f"    labels: {{env: {env}}}", "    interval: 2s"]
    lines += ["applications:", f"  - name: {s.app}", "    source: git", "    path: app",
              f"    clusters: {{names: [{', '.join(CLUSTERS)}]}}", "    wait: true",
              "    timeout: 30s", "    rollout:", "      waves:",
              "        - clusters: {names: [dev-1]}",
              "        - clusters: {matchLabels: {env: staging}}", f"          pause: {PAUSE:g}s",
              "        - clusters: {matchLabels: {env: production}}", "          maxParallel: 1"]
    s.spec.write_text("\n".join(lines) + "\n")
    s.start_worker("w1")
    s.start_worker("w2")
    s.start_beat()
    yield s
    s.stop()


def commit(s: Stack, value: str, bad: bool = False) -> str:
    s.repo.write("app/namespace.yaml", json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s.namespace}}))
    s.repo.write("app/config.yaml", configmap("settings", s.namespace, {"value": value}))
    if bad:            # refused by the API server's validation: the apply fails
        s.repo.write("app/bad.yaml", configmap("Not_A_Valid_Name", s.namespace, {}))
    elif (s.repo.path / "app/bad.yaml").exists():
        s.repo.remove("app/bad.yaml")
    sha = s.repo.commit(f"value {value}")
    s.repo.push()
    return sha


def cli(s: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT, env=s.env(),
                          capture_output=True, text=True, timeout=60)


def rollout(s: Stack) -> dict:
    done = cli(s, "rollout", "status", s.app, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def entry(s: Stack, cluster: str, result: str, revision: str) -> dict:
    found = [e for e in s.history(cluster) if e["result"] == result and e["revision"] == revision]
    assert found, (cluster, result, revision, s.history(cluster)[:5])
    return found[-1]            # the oldest such entry


def beat_run_after(s: Stack, cluster: str, since: str) -> bool:
    """A beat-triggered run of ``cluster`` ended after ``since`` (ISO time)."""
    return any(e["trigger"] == "beat" and e["started_at"] > since and e["run_id"]
               for e in s.history(cluster))


def now_iso() -> str:
    from shared.state.status import now_iso as iso

    return iso()


def test_first_rollout_waits_for_each_wave(stack: Stack) -> None:
    zero = stack.revisions[0]
    stack.wait("wave 3 waiting for its wave", lambda: stack.status("wave-3")["phase"] ==
               "Progressing" and "waiting for wave 3" in stack.status("wave-3")["message"])
    for cluster in CLUSTERS:
        stack.wait(f"{cluster} Ready", lambda c=cluster: stack.ready_at(c, zero), timeout=90)
    assert entry(stack, "dev-1", "Ready", zero)["finished_at"] <= \
        entry(stack, "dev-2", "Gate", zero)["started_at"]
    assert entry(stack, "dev-2", "Ready", zero)["finished_at"] < \
        entry(stack, "wave-3", "Gate", zero)["started_at"]
    stack.wait("rollout complete", lambda: rollout(stack)["state"] == "Complete")


def test_a_good_commit_goes_wave_by_wave(stack: Stack) -> None:
    zero = stack.revisions[0]
    one = commit(stack, "one")
    stack.revisions.append(one)
    stack.wait("dev-2 Ready at the new revision", lambda: stack.ready_at("dev-2", one), 90)
    assert stack.ready_at("wave-3", zero)          # the pause after wave 2 holds wave 3
    stack.wait("wave-3 Ready at the new revision", lambda: stack.ready_at("wave-3", one), 90)
    dev1, dev2 = entry(stack, "dev-1", "Ready", one), entry(stack, "dev-2", "Ready", one)
    gate2, gate3 = entry(stack, "dev-2", "Gate", one), entry(stack, "wave-3", "Gate", one)
    assert dev1["finished_at"] <= gate2["started_at"] <= dev2["started_at"]
    latency = _seconds(gate2["started_at"]) - _seconds(dev1["finished_at"])
    print(f"wave 2 admitted {latency:.3f} s after wave 1 was Ready")
    assert dev2["finished_at"] < gate3["started_at"]
    waited = _seconds(gate3["started_at"]) - _seconds(dev2["finished_at"])
    assert waited >= PAUSE - 0.1, (dev2, gate3)
    assert "wave 2 Ready" in gate3["message"] or "wave 3 started" in gate3["message"]
    status = rollout(stack)
    assert (status["state"], status["stable"], status["target"]) == ("Complete", one, one)


def test_a_bad_commit_halts_at_wave_one_and_abort_goes_back(stack: Stack) -> None:
    one = stack.revisions[1]
    two = commit(stack, "two", bad=True)
    stack.wait("dev-1 Failed at the bad commit", lambda: stack.status("dev-1")["phase"] ==
               "Failed" and stack.status("dev-1")["revision"] == two, 90)
    stack.wait("the rollout halted", lambda: rollout(stack)["state"] == "Halted")
    halted = now_iso()
    status = rollout(stack)
    assert status["halted"].startswith("Halted at wave 1: dev-1 Failed: "), status
    assert "Not_A_Valid_Name" in status["halted"]
    for cluster in ("dev-2", "wave-3"):          # later waves keep the old revision, tick after tick
        stack.wait(f"a beat run of {cluster} after the halt",
                   lambda c=cluster: beat_run_after(stack, c, halted), 60)
        assert stack.ready_at(cluster, one)
        assert not [e for e in stack.history(cluster) if e["revision"] == two
                    and e["result"] not in ("Halted",)]
    assert entry(stack, "dev-2", "Halted", one)["message"].startswith(f"held at {one[:12]}")
    done = cli(stack, "rollout", "abort", stack.app, "--by", "alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{stack.app}: Aborted"), done.stdout
    stack.wait("dev-1 back at the last good revision", lambda: stack.ready_at("dev-1", one), 60)
    aborted = now_iso()
    stack.wait("a beat run of dev-1 after the abort", lambda: beat_run_after(stack, "dev-1", aborted))
    assert stack.ready_at("dev-1", one)            # the aborted head is not rolled out again
    assert any("aborted by alice" in e["message"] for e in rollout(stack)["events"])


def test_pause_promote_and_resume(stack: Stack) -> None:
    one = stack.revisions[1]
    assert cli(stack, "rollout", "pause", stack.app, "--by", "bob").returncode == 0
    three = commit(stack, "three")
    stack.wait("the source at the new commit", lambda: stack.store.source_revision("git") and
               stack.store.source_revision("git")[0] == three)   # type: ignore[index]
    fetched = now_iso()
    stack.wait("a beat run of dev-1 while paused", lambda: beat_run_after(stack, "dev-1", fetched))
    assert stack.ready_at("dev-1", one)            # paused: wave 1 does not start
    assert rollout(stack)["state"] == "Paused"
    done = cli(stack, "rollout", "promote", stack.app, "--wave", "2", "--by", "bob")
    assert done.returncode == 0, done.stderr
    stack.wait("waves 1 and 2 at the new commit", lambda: stack.ready_at("dev-1", three)
               and stack.ready_at("dev-2", three), 60)
    promoted = now_iso()
    stack.wait("a beat run of wave-3 after the promotion",
               lambda: beat_run_after(stack, "wave-3", promoted))
    assert stack.ready_at("wave-3", one)           # still paused: wave 3 waits
    bad = cli(stack, "rollout", "promote", stack.app, "--wave", "4")
    assert bad.returncode == 1 and "there is no wave 4" in bad.stderr
    assert cli(stack, "rollout", "resume", stack.app, "--by", "bob").returncode == 0
    stack.wait("wave 3 at the new commit", lambda: stack.ready_at("wave-3", three), 60)
    status = rollout(stack)
    assert (status["state"], status["stable"]) == ("Complete", three)
    table = cli(stack, "rollout", "status", stack.app).stdout
    assert f"{stack.app}: Complete at wave 3 of 3: {three[:12]}" in table
    assert "wave 2 promoted by bob" in table and "resumed by bob" in table


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
