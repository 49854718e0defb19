"""One cluster's API server goes away for a minute while its units sync.

With beat ticking every few seconds, each unit keeps at most one live task
chain (its one queued run), its status says plainly that the cluster is
unreachable, and when the server is back every unit is applied once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from devtools import fleet as devfleet
from tests.support.broker import waiting_runs_by_unit
from tests.conftest import new_redis_db
from tests.support.gitutil import GitRepo
from tests.support.stack import Stack, configmap

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

APPS = 10
OUTAGE = 60.0
INTERVAL = 5


@pytest.fixture()
def outage_fleet(dev_fleet, tmp_path):
    state = devfleet.up(["outage"], tmp_path / "fleet", progress=lambda _: None,
                        workloads=False)
    try:
        yield state
    finally:
        devfleet.down(tmp_path / "fleet", progress=lambda _: None)


def _stop_apiserver(state: devfleet.FleetState) -> list[str]:
    proc = next(p for p in state.processes if p.name == "outage-apiserver")
    argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    devfleet.stop_processes([proc], grace=10)
    return argv


def _start_apiserver(state: devfleet.FleetState, argv: list[str]) -> None:
    old = next(p for p in state.processes if p.name == "outage-apiserver")
    new = devfleet.spawn(Path(old.log), old.name, argv)
    state.processes[state.processes.index(old)] = new
    (state.state_dir / "dev.json").write_text(json.dumps(state.to_json(), indent=2) + "\n")
    ca = state.state_dir / "pki" / "serving.crt"
    deadline = time.monotonic() + 60
    while not devfleet.readyz(state.servers["outage"], ca):
        assert time.monotonic() < deadline, "the restarted apiserver did not become ready"
        time.sleep(0.2)


def _write_apps(repo: GitRepo, value: str) -> None:
    for i in range(APPS):
        ns = f"outage-{i}"
        repo.write(f"apps/a{i}/ns.yaml", json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": ns}}))
        repo.write(f"apps/a{i}/cm.yaml", configmap("settings", ns, {"value": value}))


def test_an_unreachable_cluster_costs_one_chain_per_unit_and_one_apply_after(
        outage_fleet, redis_url, tmp_path):
    url = new_redis_db(redis_url)
    stack = Stack(tmp_path, url, outage_fleet.clusters, interval=INTERVAL)
    _write_apps(stack.repo, "one")
    stack.repo.commit("ten apps")
    stack.repo.push()
    lines = ["sources:", "  - name: git", f"    url: {stack.repo.bare_url()}", "    branch: main",
             f"    interval: {INTERVAL}s", "clusters:", "  - name: outage",
             f"    kubeconfig: {outage_fleet.clusters['outage']}", f"    interval: {INTERVAL}s",
             "applications:"]
    for i in range(APPS):
        lines += [f"  - name: a{i}", "    source: git", f"    path: apps/a{i}",
                  "    clusters: {names: [outage]}"]
    stack.spec.write_text("\n".join(lines) + "\n")
    client = redis.Redis.from_url(url, decode_responses=True)
    store = stack.store
    stack.start_worker("w1")
    stack.start_worker("w2")
    stack.start_beat()
    try:
        first = stack.repo.head()
        stack.wait("every unit Ready", lambda: all(
            store.get_status(f"a{i}", "outage").phase == "Ready"
            and store.get_status(f"a{i}", "outage").revision == first for i in range(APPS)),
            timeout=120)

        argv = _stop_apiserver(outage_fleet)
        _write_apps(stack.repo, "two")
        second = stack.repo.commit("value two")
        stack.repo.push()
        down_since = time.monotonic()
        while time.monotonic() - down_since < OUTAGE:
            chains = waiting_runs_by_unit(client)
            assert all(len(runs) <= 1 for runs in chains.values()), chains
            time.sleep(0.5)
        messages = {store.get_status(f"a{i}", "outage").message for i in range(APPS)}
        assert all("cluster outage unreachable: connection refused at https://127.0.0.1:" in m
                   and "next try in" in m for m in messages), messages

        _start_apiserver(outage_fleet, argv)
        try:
            stack.wait("every unit Ready at the new revision", lambda: all(
                store.get_status(f"a{i}", "outage").phase == "Ready"
                and store.get_status(f"a{i}", "outage").revision == second
                for i in range(APPS)), timeout=120)
        except AssertionError:
            units = [store.get_status(f"a{i}", "outage").to_dict() for i in range(APPS)]
            raise AssertionError(f"wanted {second}; units {units}") from None
        for i in range(APPS):
            applied = [e for e in store.history(f"a{i}", "outage")
                       if e["revision"] == second and e["changes"].get("configured")]
            assert len(applied) == 1, (i, store.history(f"a{i}", "outage"))
    finally:
        stack.stop()
