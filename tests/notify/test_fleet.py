"""Notifications end to end: real workers and beat on three real clusters, a real notifier,
and a local HTTP receiver playing Slack, a JSON webhook and GitHub's commit status API.

One stack for the module; the tests follow it in order: commits roll up once per
revision, a bad commit fails one cluster (one failure message, one recovery), no-op
passes say nothing, and restarted or doubled notifiers send nothing twice.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
import uuid

import pytest
import redis

from scheduler.notify.loop import NOTIFIERS
from tests.support.notify_receiver import Receiver
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

CLUSTERS = ("dev-1", "dev-2", "notify-3")
GITHUB = "/repos/org/gitops/statuses/"


@pytest.fixture(scope="module")
def third_cluster(dev_fleet, tmp_path_factory):
    from devtools import fleet as devfleet

    state_dir = tmp_path_factory.mktemp("notify-fleet")
    state = devfleet.up(["notify-3"], state_dir, progress=lambda _: None, workloads=False)
    yield state.clusters["notify-3"]
    devfleet.down(state_dir, progress=lambda _: None)


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    r.fail("/flaky", 500, 500)            # the first delivery there is refused twice
    yield r
    r.close()


@pytest.fixture(scope="module")
def stack(dev_fleet, third_cluster, receiver, redis_url, tmp_path_factory):
    from tests.conftest import new_redis_db

    app = "app" + uuid.uuid4().hex[:6]
    s = Stack(tmp_path_factory.mktemp("notify"), new_redis_db(redis_url),
              {**dev_fleet.clusters, "notify-3": third_cluster}, app=app,
              env_extra={"NOTIFY_CHAT_URL": f"{receiver.url}/chat",
                         "NOTIFY_HOOK_URL": f"{receiver.url}/hook",
                         "NOTIFY_HOOK_TOKEN": "hook-token", "NOTIFY_GH_TOKEN": "gh-token"})
    for cluster in CLUSTERS:
        write_cluster(s, cluster, "one")
    s.repo.commit("per-cluster config")
    s.repo.push()
    write_spec(s, receiver.url)
    s.start_worker("w1")
    s.start_worker("w2")
    s.start_beat()
    s.notifiers = [start_notifier(s, "notifier-1")]
    yield s
    s.stop()


def write_cluster(s: Stack, cluster: str, value: str, broken: bool = False) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": "settings", "namespace": s.namespace},
              "data": {"value": value, "cluster": "${cluster_name}"}}
    s.repo.write(f"clusters/{cluster}/namespace.yaml", json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s.namespace}}))
    s.repo.write(f"clusters/{cluster}/config.yaml",
                 "data: [unclosed\n" if broken else json.dumps(config))


def write_spec(s: Stack, receiver_url: str) -> None:
    lines = ["sources:", "  - name: git", f"    url: {s.repo.bare_url()}", "    branch: main",
             "    interval: 1s", "clusters:"]
    for name in CLUSTERS:
        lines += [f"  - name: {name}", f"    kubeconfig: {s.kubeconfigs[name]}",
                  "    labels: {team: t}", "    interval: 2s"]
    lines += ["applications:", f"  - name: {s.app}", "    source: git",
              "    path: clusters/${cluster_name}", "    clusters: {matchLabels: {team: t}}",
              "    wait: false",
              "notifications:", "  debounce: 1s", "  settleTimeout: 2m", "  routes:",
              "    - {name: chat, provider: slack, urlEnv: NOTIFY_CHAT_URL}",
              "    - {name: hook, provider: webhook, urlEnv: NOTIFY_HOOK_URL, tokenEnv: NOTIFY_HOOK_TOKEN}",
              f"    - {{name: flaky, provider: webhook, url: '{receiver_url}/flaky', events: [rollup]}}",
              f"    - {{name: commits, provider: github, api: '{receiver_url}', repository: org/gitops,",
              "       tokenEnv: NOTIFY_GH_TOKEN}"]
    s.spec.write_text("\n".join(lines) + "\n")


def start_notifier(s: Stack, name: str):
    return s._spawn(name, ["notifier"])


def commit(s: Stack, message: str, value: str, broken: str | None = None) -> str:
    for cluster in CLUSTERS:
        write_cluster(s, cluster, value, broken=cluster == broken)
    sha = s.repo.commit(message)
    s.repo.push()
    return sha


# -- what the receiver got ---------------------------------------------------------------

def texts(receiver: Receiver, path: str = "/chat") -> list[str]:
    return [r.body["text"] for r in receiver.got(path)]


def rollups(receiver: Receiver, rev: str, path: str = "/chat") -> list[str]:
    return [t for t in texts(receiver, path) if re.match(rf"{rev[:8]} [a-z0-9-]+: \d+/\d+ Ready", t)]


def events(receiver: Receiver, event: str) -> list[dict]:
    return [r.body for r in receiver.got("/hook") if r.body["event"] == event]


def statuses(receiver: Receiver, rev: str) -> list[tuple[str, str]]:
    return [(r.body["state"], r.body["description"]) for r in receiver.got(GITHUB + rev)]


def quiet_pass(s: Stack) -> None:
    """Wait for a no-op pass: every unit synced again by beat, then every running notifier
    through two more passes over it."""
    since = time.time()
    for cluster in CLUSTERS:
        s.wait(f"{cluster} synced again", lambda c=cluster: _t(
            s.status(c)["last_synced_at"] or "1970-01-01T00:00:00Z") > since, timeout=60)
    synced = time.time()
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    names = [f"{socket.gethostname()}-{p.pid}" for p in s.notifiers if p.poll() is None]

    def passed() -> bool:
        seen = client.hgetall(NOTIFIERS)
        return all(float(seen.get(n, 0)) > synced + 2 for n in names)
    s.wait("the notifiers' passes", passed, timeout=30)


def _t(stamp: str) -> float:
    from scheduler.notify.decide import parse_time

    return parse_time(stamp) or 0.0


# -- the story ------------------------------------------------------------------------------

def test_each_commit_rolls_up_once_per_application_across_three_clusters(stack, receiver):
    rev0 = stack.repo.head()
    receiver.wait("the first roll-up", lambda: rollups(receiver, rev0))
    rev1 = commit(stack, "value two", "two")
    receiver.wait("the roll-up of the second commit", lambda: rollups(receiver, rev1))
    receiver.wait("the flaky route's deliveries, after its back-off", lambda: all(
        any(r.body["revision"] == rev for r in receiver.got("/flaky")) for rev in (rev0, rev1)))
    quiet_pass(stack)
    for rev in (rev0, rev1):
        (text,) = rollups(receiver, rev)
        assert re.fullmatch(rf"{rev[:8]} {stack.app}: 3/3 Ready in [\d.]+ s", text), text
        (hook,) = [e for e in events(receiver, "rollup") if e["revision"] == rev]
        assert hook["state"] == "success" and set(hook["clusters"]) == set(CLUSTERS)
        final = [s for s in statuses(receiver, rev) if s[0] != "pending"]
        assert len(final) == 1 and final[0][0] == "success"
        assert re.fullmatch(r"fleet: 3/3 Ready in [\d.]+ s", final[0][1])
        assert len(statuses(receiver, rev)) <= 2            # at most one pending before it
        assert len([r for r in receiver.got("/flaky") if r.body["revision"] == rev]) == 1
    assert len(texts(receiver)) == 2                          # nothing but the roll-ups
    assert events(receiver, "failure") == [] and events(receiver, "recovery") == []
    hook = receiver.got("/hook")[0]
    assert hook.headers["Authorization"] == "Bearer hook-token"
    assert receiver.got(GITHUB)[0].headers["Authorization"] == "Bearer gh-token"


def test_a_refused_delivery_is_retried_with_back_off_and_delivered_once(stack, receiver):
    rev0 = [r for r in receiver.got("/flaky", ok=False)][0].body["revision"]
    tries = [r for r in receiver.got("/flaky", ok=False) if r.body["revision"] == rev0]
    assert [r.status for r in tries] == [500, 500, 200]
    assert len({json.dumps(r.body, sort_keys=True) for r in tries}) == 1


def test_a_bad_commit_fails_one_cluster_once_and_its_fix_recovers_once(stack, receiver):
    bad = commit(stack, "broken on notify-3", "three", broken="notify-3")
    receiver.wait("the failure", lambda: any(t.startswith(f"{bad[:8]} notify-3/{stack.app} Failed: ")
                                             for t in texts(receiver)))
    receiver.wait("the bad commit's roll-up", lambda: rollups(receiver, bad))
    fixed = commit(stack, "fixed", "four")
    receiver.wait("the recovery", lambda: any(" again " in t for t in texts(receiver)))
    receiver.wait("the fix's roll-up", lambda: rollups(receiver, fixed))
    quiet_pass(stack)
    (rolled,) = rollups(receiver, bad)
    assert rolled.startswith(f"{bad[:8]} {stack.app}: 2/3 Ready in ")
    assert f"; notify-3 Failed: clusters/notify-3/config.yaml:" in rolled
    failures = [t for t in texts(receiver) if t.startswith(f"{bad[:8]} notify-3/{stack.app} Failed")]
    recoveries = [t for t in texts(receiver) if " again " in t]
    assert len(failures) == 1 and len(recoveries) == 1, texts(receiver)
    assert recoveries[0] == f"{fixed[:8]} notify-3/{stack.app} Ready again (was Failed)"
    assert len(events(receiver, "failure")) == 1 and len(events(receiver, "recovery")) == 1
    assert [s for s in statuses(receiver, bad) if s[0] != "pending"][0][0] == "failure"
    assert [s for s in statuses(receiver, fixed) if s[0] != "pending"][0][0] == "success"
    (text,) = rollups(receiver, fixed)
    assert re.fullmatch(rf"{fixed[:8]} {stack.app}: 3/3 Ready in [\d.]+ s", text)
    assert len(texts(receiver)) == 6        # 4 roll-ups, 1 failure, 1 recovery


def test_restarted_and_doubled_notifiers_send_nothing_twice(stack, receiver):
    before = {path: len(receiver.got(path, ok=False)) for path in ("/chat", "/hook", GITHUB)}
    stack.kill(stack.notifiers.pop(), signal.SIGTERM)
    stack.notifiers = [start_notifier(stack, "notifier-2"), start_notifier(stack, "notifier-3")]
    quiet_pass(stack)
    assert {path: len(receiver.got(path, ok=False)) for path in before} == before
    rev = commit(stack, "value five", "five")
    receiver.wait("the roll-up with two notifiers", lambda: rollups(receiver, rev))
    quiet_pass(stack)
    assert len(rollups(receiver, rev)) == 1 and len(rollups(receiver, rev, "/hook")) == 1
    assert len([s for s in statuses(receiver, rev) if s[0] != "pending"]) == 1
    assert len(texts(receiver)) == before["/chat"] + 1
