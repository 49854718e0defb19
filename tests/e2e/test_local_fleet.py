"""The local fleet: real etcd + kube-apiserver per cluster (and, with workloads, controllers,
scheduler and kwok Nodes), up, used and down; bad input named, nothing left running."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import fleet as devfleet
from tests.conftest import ROOT

pytestmark = pytest.mark.k8s


def test_configmap_round_trip_in_each_cluster(kube_clients):
    from kubernetes import client

    assert len(kube_clients) == 2
    for name, api_client in kube_clients.items():
        core = client.CoreV1Api(api_client)
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="hello"), data={"who": name})
        core.create_namespaced_config_map("default", body)
        assert core.read_namespaced_config_map("hello", "default").data == {"who": name}
        core.delete_namespaced_config_map("hello", "default")


def test_state_file_lists_redis_and_kubeconfigs(dev_fleet):
    data = json.loads((dev_fleet.state_dir / "dev.json").read_text())
    assert data["redis_url"].startswith("redis://")
    assert set(data["clusters"]) == {"dev-1", "dev-2"}
    assert all(Path(p).exists() for p in data["clusters"].values())


def test_second_up_in_same_dir_is_refused(dev_fleet):
    with pytest.raises(devfleet.DevFleetError, match="still running"):
        devfleet.up(["x"], dev_fleet.state_dir, progress=lambda _: None)
    assert all(devfleet.pid_alive(p.pid) for p in dev_fleet.processes)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, env=full_env, timeout=120)


def test_up_status_down_through_cli_leaves_nothing(dev_fleet, tmp_path, redis_url):
    proc = _cli("dev", "up", "--names", "solo", "--state-dir", str(tmp_path),
                FLEETSYNC_REDIS_URL=redis_url)
    assert proc.returncode == 0, proc.stderr
    state = devfleet.read_state(tmp_path)
    assert state is not None and list(state.clusters) == ["solo"]
    assert {"solo-controller-manager", "solo-scheduler", "solo-kwok"} <= {
        p.name for p in state.processes}, "workloads are on by default"
    status = _cli("dev", "status", "--state-dir", str(tmp_path))
    assert status.returncode == 0 and "nodes 3/3 Ready" in status.stdout, status.stdout
    pids = [p.pid for p in state.processes]
    down = _cli("dev", "down", "--state-dir", str(tmp_path))
    assert down.returncode == 0, down.stderr
    assert not any(devfleet.pid_alive(pid) for pid in pids)
    assert not (tmp_path / "dev.json").exists() and not (tmp_path / "clusters").exists()
    assert devfleet.redis_answers(redis_url), "a reused Redis must be left running"


def test_missing_binary_dir_is_a_clear_error(tmp_path):
    proc = _cli("dev", "up", "--clusters", "1", "--state-dir", str(tmp_path),
                FLEETSYNC_K8S_BIN=str(tmp_path / "nowhere"))
    assert proc.returncode == 1
    assert "FLEETSYNC_K8S_BIN" in proc.stderr and "does not hold" in proc.stderr
    assert not (tmp_path / "dev.json").exists()


def test_no_binaries_and_no_go_is_a_clear_error(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = _cli("dev", "up", "--clusters", "1", "--state-dir", str(tmp_path / "s"),
                PATH=str(empty), XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert proc.returncode == 1
    assert "Go is not installed" in proc.stderr


def test_process_dying_at_start_stops_the_rest(dev_fleet, tmp_path, redis_url, monkeypatch):
    """A port taken between choosing and binding: the error names it; nothing is left."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    ports = iter([port, devfleet.free_port(), devfleet.free_port()])
    monkeypatch.setattr(devfleet, "free_port", lambda: next(ports))
    monkeypatch.setenv("FLEETSYNC_REDIS_URL", redis_url)
    started: list[devfleet.Proc] = []
    real_spawn = devfleet._spawn
    monkeypatch.setattr(devfleet, "_spawn", lambda *a: started.append(real_spawn(*a)) or started[-1])
    with pytest.raises(devfleet.DevFleetError, match="exited during start-up"):
        devfleet.up(["clash"], tmp_path, progress=lambda _: None)
    taken.close()
    assert started and not any(devfleet.pid_alive(p.pid) for p in started)
    assert not (tmp_path / "dev.json").exists()


def _control_plane_only_dir(tmp_path: Path) -> Path:
    """A FLEETSYNC_K8S_BIN with etcd and kube-apiserver but none of the workload binaries."""
    from devtools.binaries import find_binaries

    found = find_binaries()
    assert found is not None
    only = tmp_path / "bin"
    only.mkdir(parents=True)
    (only / "etcd").symlink_to(found.etcd)
    (only / "kube-apiserver").symlink_to(found.kube_apiserver)
    return only


def test_missing_workload_binary_is_named_and_nothing_starts(dev_fleet, tmp_path, redis_url):
    proc = _cli("dev", "up", "--clusters", "1", "--state-dir", str(tmp_path / "s"),
                FLEETSYNC_K8S_BIN=str(_control_plane_only_dir(tmp_path)),
                FLEETSYNC_REDIS_URL=redis_url)
    assert proc.returncode == 1
    assert "does not hold kube-controller-manager and kube-scheduler and kwok" in proc.stderr
    assert not (tmp_path / "s" / "dev.json").exists() and not (tmp_path / "s" / "logs").exists()


def test_no_workloads_needs_only_etcd_and_apiserver(dev_fleet, tmp_path, redis_url):
    env = {"FLEETSYNC_K8S_BIN": str(_control_plane_only_dir(tmp_path)),
           "FLEETSYNC_REDIS_URL": redis_url}
    state_dir = str(tmp_path / "s")
    proc = _cli("dev", "up", "--names", "bare", "--no-workloads", "--state-dir", state_dir, **env)
    try:
        assert proc.returncode == 0, proc.stderr
        state = devfleet.read_state(tmp_path / "s")
        assert state is not None and state.nodes == {}
        assert sorted(p.name for p in state.processes) == ["bare-apiserver", "bare-etcd"]
        status = _cli("dev", "status", "--state-dir", state_dir)
        assert status.returncode == 0 and "nodes" not in status.stdout
    finally:
        assert _cli("dev", "down", "--state-dir", state_dir).returncode == 0


def test_build_reports_a_missing_workload_binary(tmp_path):
    proc = _cli("dev", "build", FLEETSYNC_K8S_BIN=str(_control_plane_only_dir(tmp_path)))
    assert proc.returncode == 1 and "does not hold kube-controller-manager" in proc.stderr
    ok = _cli("dev", "build", "--no-workloads",
              FLEETSYNC_K8S_BIN=str(_control_plane_only_dir(tmp_path / "again")))
    assert ok.returncode == 0, ok.stderr
    assert "kube-apiserver:" in ok.stdout and "kwok" not in ok.stdout


def test_nodes_not_ready_in_time_are_named_and_everything_stops(dev_fleet, tmp_path, redis_url,
                                                                 monkeypatch):
    from devtools.binaries import find_binaries

    if find_binaries(workloads=True) is None:
        pytest.skip("kube-controller-manager, kube-scheduler or kwok not built")
    monkeypatch.setenv("FLEETSYNC_REDIS_URL", redis_url)
    started: list[devfleet.Proc] = []
    real_spawn = devfleet._spawn

    def spawn(state: devfleet.FleetState, name: str, argv: list[str]) -> devfleet.Proc:
        if name.endswith("-kwok"):          # nothing makes the Nodes Ready: a kwok that hangs
            argv = ["sleep", "600"]
        started.append(real_spawn(state, name, argv))
        return started[-1]
    monkeypatch.setattr(devfleet, "_spawn", spawn)
    with pytest.raises(devfleet.DevFleetError) as caught:
        devfleet.up(["late"], tmp_path, progress=lambda _: None, nodes=2, nodes_timeout=0.05)
    message = str(caught.value)
    assert "cluster late: Node(s) kwok-node-1, kwok-node-2 not Ready after 0.05s" in message
    assert {"late-controller-manager", "late-scheduler", "late-kwok"} <= {p.name for p in started}
    assert not any(devfleet.pid_alive(p.pid) for p in started)
    assert not (tmp_path / "dev.json").exists()
