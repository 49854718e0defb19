"""One cluster's API server hangs (SIGSTOP: it accepts connections and never answers)
for 45 s while beat ticks every 2 s.

A timeout counts as the cluster not answering, exactly like a refused connection:
the first timed-out request marks it down, its units wait for the next probe with
one task chain each and no pile-up in the broker, their status names the cluster
and the timeout, and once a probe gets an answer again every unit follows to Ready
at the new revision, applied once (the first probe after the thaw may still time
out while the server catches up: the back-off then sets the next one).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter

import pytest
import redis

from devtools import fleet as devfleet
from shared.protocol import cluster_backoff
from shared.tasks_api import TASKS
from shared.state.clusters import ClusterHealth
from tests.conftest import new_redis_db
from tests.support.broker import _call, _messages, waiting_runs_by_unit
from tests.support.gitutil import GitRepo
from tests.support.stack import Stack, configmap

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

APPS = 6
FREEZE = 45.0
INTERVAL = 2
# once the cluster is down: a chain per unit and a few ticks' reconcile and fetch (while
# the first requests time out, the workers are busy and beat's ticks wait for them)
BACKLOG = APPS + 6
READ_TIMEOUT = 10.0          # workers/apply/kube.py DEFAULT_TIMEOUT (read)
REQUEST_TIMEOUT = 15.0       # connect (5 s) and read (10 s)


@pytest.fixture()
def staging(dev_fleet, tmp_path):
    """A cluster of this test's own: its API server is the one frozen."""
    state = devfleet.up(["staging"], tmp_path / "fleet", progress=lambda _: None,
                        workloads=False)
    try:
        yield state
    finally:
        devfleet.down(tmp_path / "fleet", progress=lambda _: None)


def _write_apps(repo: GitRepo, value: str) -> None:
    for i in range(APPS):
        ns = f"hang-{i}"
        repo.write(f"apps/a{i}/ns.yaml", json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": ns}}))
        repo.write(f"apps/a{i}/cm.yaml", configmap("settings", ns, {"value": value}))


def _spec(stack: Stack, kubeconfig: str) -> str:
    lines = ["sources:", "  - name: git", f"    url: {stack.repo.bare_url()}", "    branch: main",
             f"    interval: {INTERVAL}s", "clusters:", "  - name: staging",
             f"    kubeconfig: {kubeconfig}", f"    interval: {INTERVAL}s", "applications:"]
    for i in range(APPS):
        lines += [f"  - name: a{i}", "    source: git", f"    path: apps/a{i}",
                  "    clusters: {names: [staging]}"]
    return "\n".join(lines) + "\n"


def _where_runs_are(client: redis.Redis) -> str:
    """For a failure: each unit's protocol keys, its queued run's record, and which runs
    have a message in the broker (queued, or reserved by a worker: unacked)."""
    in_broker = waiting_runs_by_unit(client)
    lines = []
    for i in range(APPS):
        unit = f"staging/a{i}"
        queued = client.get(f"fleetsync:queued:{unit}") or ""
        record = client.hgetall(f"fleetsync:run:{unit}:{queued}") if queued else {}
        lines.append(f"{unit}: queued={queued} lock={client.get(f'fleetsync:lock:{unit}')} "
                     f"run={ {k: record.get(k) for k in ('state', 'next_try_at', 'summary')} } "
                     f"in broker={sorted(in_broker.get(unit, ()))} now={time.time():.1f}")
    return "\n".join(lines)


def _broker_messages(client: redis.Redis) -> str:
    """For a failure: each message in the broker, with its run's state."""
    lines = []
    for message in _messages(client):
        name, args, kwargs = _call(message)
        named = TASKS[name].named(args, kwargs) if name in TASKS else kwargs
        unit = "/".join(str(named.get(k, "")) for k in ("cluster", "app"))
        run_id = kwargs.get("run_id", "")
        state = client.hget(f"fleetsync:run:{unit}:{run_id}", "state") if run_id else ""
        lines.append(f"{name} {unit} run={run_id} state={state} "
                     f"eta={message['headers'].get('eta')}")
    return "\n".join(sorted(lines))


def test_a_hung_api_server_is_a_cluster_that_does_not_answer(staging, redis_url, tmp_path):
    url = new_redis_db(redis_url)
    stack = Stack(tmp_path, url, staging.clusters, interval=INTERVAL)
    _write_apps(stack.repo, "one")
    stack.repo.commit("six apps")
    stack.repo.push()
    stack.spec.write_text(_spec(stack, str(staging.clusters["staging"])))
    client = redis.Redis.from_url(url, decode_responses=True)
    clusters = ClusterHealth(client)
    store = stack.store
    statuses = lambda: [store.get_status(f"a{i}", "staging") for i in range(APPS)]  # noqa: E731
    apiserver = next(p for p in staging.processes if p.name == "staging-apiserver")
    stack.start_worker("w1")
    stack.start_worker("w2")
    stack.start_beat()
    frozen = False
    try:
        first = stack.repo.head()
        stack.wait("every unit Ready", lambda: all(
            s.phase == "Ready" and s.revision == first for s in statuses()), timeout=120)

        _write_apps(stack.repo, "two")
        second = stack.repo.commit("value two")
        os.kill(apiserver.pid, signal.SIGSTOP)
        frozen = True
        stack.repo.push()
        since, named, most = time.monotonic(), 0.0, 0
        while time.monotonic() - since < FREEZE:
            chains = waiting_runs_by_unit(client)
            assert all(len(runs) <= 1 for runs in chains.values()), chains
            waiting = Counter(m["headers"]["task"] for m in _messages(client))
            if named and time.monotonic() - since > named + READ_TIMEOUT:  # drained by now
                most = max(most, sum(waiting.values()))
                assert most <= BACKLOG, (f"{most} task messages wait in the broker: {waiting}\n"
                                         + _broker_messages(client))
            if not named and all("cluster staging does not answer: timed out after"
                                 in s.message for s in statuses()):
                named = time.monotonic() - since
            time.sleep(0.5)
        messages = {s.message for s in statuses()}
        assert named, f"no status named the hung cluster within {FREEZE:g} s: {messages}"
        print(f"named after {named:.1f} s; at most {most} messages in the broker after")
        assert all("at https://127.0.0.1:" in m and "next try in" in m for m in messages), \
            messages
        assert clusters.down("staging") is not None

        os.kill(apiserver.pid, signal.SIGCONT)
        frozen = False
        thawed = time.monotonic()
        down = clusters.down("staging")
        probe_in = max(0.0, down.next_at - time.time()) if down else 0.0
        # the first probe after the thaw may still find the server catching up on what
        # queued while it was stopped: its timeout moves the next probe out by the
        # back-off. What is promised: the probe that gets an answer marks the cluster up,
        # and every unit follows at once, applied once.
        failures = down.failures if down else 0
        answered = probe_in + 2 * (REQUEST_TIMEOUT + cluster_backoff(failures + 1)) + 20.0
        try:
            stack.wait("the cluster marked up by a probe",
                       lambda: clusters.down("staging") is None, timeout=answered)
            up = time.monotonic()
            stack.wait("every unit Ready at the new revision", lambda: all(
                s.phase == "Ready" and s.revision == second for s in statuses()),
                timeout=REQUEST_TIMEOUT + INTERVAL + 20.0)
        except AssertionError as exc:
            raise AssertionError(f"not Ready {time.monotonic() - thawed:.0f} s after the "
                                 f"server answered again (next probe was in {probe_in:.0f} s);"
                                 f" units {[s.to_dict() for s in statuses()]}; "
                                 f"{_where_runs_are(client)}") from exc
        print(f"cluster up {up - thawed:.1f} s after the thaw, every unit Ready "
              f"{time.monotonic() - up:.1f} s later")
        assert clusters.down("staging") is None
        for i in range(APPS):
            applied = [e for e in store.history(f"a{i}", "staging")
                       if e["revision"] == second and e["changes"].get("configured")]
            assert len(applied) == 1, (i, store.history(f"a{i}", "staging"))
    finally:
        if frozen:
            os.kill(apiserver.pid, signal.SIGCONT)
        stack.stop()
