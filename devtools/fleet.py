"""The local fleet: a real Redis and N real Kubernetes clusters on loopback.

``up`` starts (or reuses) Redis, then for every cluster an etcd and a
kube-apiserver on free loopback ports, each with its own data directory, waits
for every ``/readyz``, and writes ``DIR/kubeconfigs/<name>.yaml`` and
``DIR/dev.json``. With workloads (the default) every cluster also runs
kube-controller-manager, kube-scheduler and kwok with N fake Nodes, and ``up``
returns once those Nodes are Ready (see ``devtools.workloads``): Pods are
scheduled, run, fail on demand, and are garbage-collected as on a real cluster.
``workloads=False`` keeps the bare control plane, where nothing reconciles
Deployments or garbage-collects (tests that set status by hand want that).
Everything it starts is recorded in ``dev.json`` so that ``down`` can stop it;
when ``up`` fails half way it stops what it started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from devtools import workloads as wl
from devtools.binaries import Binaries, ensure_binaries
from devtools.processes import Proc as Proc, free_port as free_port, pid_alive as pid_alive
from devtools.processes import spawn as spawn, stop_processes as stop_processes
from shared.settings import DEFAULT_REDIS_URL, state_dir

Progress = Callable[[str], None]
ADMIN_TOKEN = "fleetsync-dev-admin-token"
READY_TIMEOUT = 60.0


class DevFleetError(RuntimeError):
    """The local fleet cannot be brought up or down; the message says what to do."""


@dataclass
class FleetState:
    state_dir: Path
    redis_url: str
    clusters: dict[str, str] = field(default_factory=dict)       # name -> kubeconfig
    servers: dict[str, str] = field(default_factory=dict)        # name -> https URL
    processes: list[Proc] = field(default_factory=list)
    nodes: dict[str, list[str]] = field(default_factory=dict)    # name -> fake Nodes (workloads)
    registry: dict[str, str] = field(default_factory=dict)       # devtools.fleet_registry

    @property
    def workloads(self) -> bool:
        return bool(self.nodes)

    def to_json(self) -> dict:
        return {
            "redis_url": self.redis_url,
            "clusters": self.clusters,
            "servers": self.servers,
            "nodes": self.nodes,
            "processes": [vars(p) for p in self.processes],
            "registry": self.registry,
        }

    @classmethod
    def from_json(cls, state_dir: Path, data: dict) -> "FleetState":
        return cls(state_dir, data["redis_url"], dict(data.get("clusters", {})),
                   dict(data.get("servers", {})),
                   [Proc(**p) for p in data.get("processes", [])],
                   {k: list(v) for k, v in data.get("nodes", {}).items()},
                   dict(data.get("registry", {})))


def default_state_dir() -> Path:
    return state_dir() / "dev"


def read_state(state: Path) -> FleetState | None:
    path = state / "dev.json"
    if not path.exists():
        return None
    return FleetState.from_json(state, json.loads(path.read_text()))


# --- Redis -------------------------------------------------------------------

def redis_answers(url: str, timeout: float = 0.5) -> bool:
    """True when something at ``url`` answers a Redis PING (no client library needed)."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379),
                                      timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def _start_redis(state: FleetState, progress: Progress) -> None:
    wanted = os.environ.get("FLEETSYNC_REDIS_URL", DEFAULT_REDIS_URL)
    if redis_answers(wanted):
        progress(f"Redis: reusing {wanted}")
        state.redis_url = wanted
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise DevFleetError("redis-server is not installed and nothing answers at "
                            f"{wanted}: install it (apt-get install redis-server) "
                            "or set FLEETSYNC_REDIS_URL to a running Redis")
    port = free_port()
    data = state.state_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    _spawn(state, "redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", str(data)])
    state.redis_url = f"redis://127.0.0.1:{port}/0"
    _wait(lambda: redis_answers(state.redis_url), state, "redis", 10)
    progress(f"Redis: started on {state.redis_url}")


# --- processes ---------------------------------------------------------------

def _spawn(state: FleetState, name: str, argv: list[str]) -> Proc:
    proc = spawn(state.state_dir / "logs" / f"{name}.log", name, argv)
    state.processes.append(proc)
    return proc


def _log_tail(proc: Proc, lines: int = 8) -> str:
    try:
        text = Path(proc.log).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line[:300] for line in text[-lines:])


def _wait(ready: Callable[[], bool], state: FleetState, name: str, timeout: float,
          what: Callable[[], str] | None = None) -> None:
    """Poll ``ready`` until true; a process of ``name`` exiting, or the timeout, is an
    error naming it (``what`` says what was not ready, by default ``name``)."""
    deadline = time.monotonic() + timeout
    procs = [p for p in state.processes if p.name == name or p.name.startswith(name + "-")]
    while time.monotonic() < deadline:
        if ready():
            return
        for proc in procs:
            if not pid_alive(proc.pid):
                raise DevFleetError(f"{proc.name} exited during start-up "
                                    f"(log {proc.log}):\n{_log_tail(proc)}")
        time.sleep(0.1)
    raise DevFleetError(f"{what() if what else name + ' was not ready'} after {timeout:g}s (logs in "
                        f"{state.state_dir / 'logs'})")


# --- control planes ----------------------------------------------------------

def _pki(state_dir: Path) -> Path:
    """One serving certificate (SAN 127.0.0.1, localhost) and service-account key pair."""
    pki = state_dir / "pki"
    if (pki / "serving.crt").exists() and (pki / "sa.pub").exists():
        return pki
    if shutil.which("openssl") is None:
        raise DevFleetError("openssl is needed to make the local certificates: "
                            "apt-get install openssl")
    pki.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    subprocess.run(["openssl", "req", "-x509", *ec, "-keyout", str(pki / "serving.key"),
                    "-out", str(pki / "serving.crt"), "-days", "3650", "-subj", "/CN=fleetsync-dev",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-out", str(pki / "sa.key")],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(pki / "sa.key"), "-pubout",
                    "-out", str(pki / "sa.pub")], check=True, capture_output=True)
    (pki / "tokens.csv").write_text(f"{ADMIN_TOKEN},admin,admin-uid,system:masters\n")
    return pki


def _start_cluster(state: FleetState, name: str, bins: Binaries, pki: Path) -> str:
    data = state.state_dir / "clusters" / name
    data.mkdir(parents=True, exist_ok=True)
    client, peer, secure = free_port(), free_port(), free_port()
    _spawn(state, f"{name}-etcd", [
        str(bins.etcd), "--name", name, "--data-dir", str(data / "etcd"),
        "--listen-client-urls", f"http://127.0.0.1:{client}",
        "--advertise-client-urls", f"http://127.0.0.1:{client}",
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"{name}=http://127.0.0.1:{peer}",
        "--unsafe-no-fsync", "--log-level", "warn", "--listen-metrics-urls", "",
    ])
    _spawn(state, f"{name}-apiserver", [
        str(bins.kube_apiserver),
        "--etcd-servers", f"http://127.0.0.1:{client}", "--etcd-prefix", f"/{name}",
        "--bind-address", "127.0.0.1", "--secure-port", str(secure),
        "--tls-cert-file", str(pki / "serving.crt"), "--tls-private-key-file", str(pki / "serving.key"),
        "--service-cluster-ip-range", "10.96.0.0/16",
        "--service-account-key-file", str(pki / "sa.pub"),
        "--service-account-signing-key-file", str(pki / "sa.key"),
        "--service-account-issuer", "https://kubernetes.default.svc",
        "--authorization-mode", "RBAC", "--token-auth-file", str(pki / "tokens.csv"),
        "--disable-admission-plugins", "ServiceAccount", "--allow-privileged",
        "--enable-priority-and-fairness=false", "--profiling=false",
        "--cert-dir", str(data / "certs"), "-v", "0",
    ])
    server = f"https://127.0.0.1:{secure}"
    state.servers[name] = server
    return server


def readyz(server: str, ca_file: Path, timeout: float = 1.0) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    req = urllib.request.Request(server + "/readyz",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def write_kubeconfig(path: Path, name: str, server: str, ca_file: Path) -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server,
                                                 "certificate-authority": str(ca_file)}}],
        "users": [{"name": f"{name}-admin", "user": {"token": ADMIN_TOKEN}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")   # JSON is YAML
    path.chmod(0o600)


def _check_not_running(state_dir: Path) -> None:
    previous = read_state(state_dir)
    if previous is None:
        return
    alive = [p.name for p in previous.processes if pid_alive(p.pid)]
    if alive:
        raise DevFleetError(
            f"a local fleet is still running in {state_dir} ({', '.join(alive)}): "
            f"run `fleetsync dev down --state-dir {state_dir}` first, or pick another --state-dir")
    (state_dir / "dev.json").unlink()


def up(names: list[str], state_dir: Path, progress: Progress = print, workloads: bool = True,
       nodes: int = wl.DEFAULT_NODES, nodes_timeout: float = wl.NODES_READY_TIMEOUT) -> FleetState:
    """Start Redis and one cluster per name; on any failure stop what was started.

    With ``workloads`` each cluster also runs its controllers, scheduler and kwok
    with ``nodes`` fake Nodes, which must be Ready within ``nodes_timeout`` seconds."""
    started = time.monotonic()
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    _check_not_running(state_dir)
    bins = ensure_binaries(progress, workloads=workloads)
    state = FleetState(state_dir, "")
    try:
        _start_redis(state, progress)
        pki = _pki(state_dir)
        for name in names:
            _start_cluster(state, name, bins, pki)
        progress(f"Starting {len(names)} control plane(s): {', '.join(names)}"
                 + ("" if workloads else " (no workloads)"))
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            list(pool.map(lambda n: _wait(lambda: readyz(state.servers[n], pki / "serving.crt"),
                                          state, n, READY_TIMEOUT), names))
        for name in names:
            kubeconfig = state_dir / "kubeconfigs" / f"{name}.yaml"
            write_kubeconfig(kubeconfig, name, state.servers[name], pki / "serving.crt")
            state.clusters[name] = str(kubeconfig)
        if workloads:
            _start_workloads(state, names, bins, pki, nodes, nodes_timeout, progress)
    except BaseException:
        stop_processes(state.processes, grace=5)
        raise
    (state_dir / "dev.json").write_text(json.dumps(state.to_json(), indent=2) + "\n")
    progress(f"Ready in {time.monotonic() - started:.1f}s; state in {state_dir / 'dev.json'}")
    return state


def _start_workloads(state: FleetState, names: list[str], bins: Binaries, pki: Path,
                     count: int, timeout: float, progress: Progress) -> None:
    """Controllers, scheduler and kwok per cluster, then its fake Nodes, then wait for them."""
    ca = pki / "serving.crt"
    node_names = wl.node_names(count)
    if not wl.STAGES.is_file():
        raise DevFleetError(f"kwok's Stages are missing ({wl.STAGES}): the devtools package "
                            "is incomplete; reinstall it (pip install -e .)")
    for name in names:
        for proc_name, argv in wl.commands(name, Path(state.clusters[name]), bins, pki):
            _spawn(state, proc_name, argv)
        try:
            wl.create_nodes(state.servers[name], ca, ADMIN_TOKEN, node_names)
        except wl.ApiError as exc:
            raise DevFleetError(f"{name}: cannot create its fake Nodes: {exc}") from exc
        state.nodes[name] = node_names
    progress(f"Waiting for {count} Node(s) per cluster to be Ready "
             "(kube-controller-manager, kube-scheduler, kwok)")
    pending = {name: list(node_names) for name in names}

    def ready(name: str) -> bool:
        pending[name] = wl.nodes_not_ready(state.servers[name], ca, ADMIN_TOKEN, node_names)
        return not pending[name]

    def wait(name: str) -> None:
        _wait(lambda: ready(name), state, name, timeout,
              what=lambda: f"cluster {name}: Node(s) {', '.join(pending[name])} not Ready")

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        list(pool.map(wait, names))


def down(state_dir: Path, progress: Progress = print) -> None:
    """Stop every process recorded in ``dev.json`` and remove the fleet's data."""
    state_dir = state_dir.resolve()
    state = read_state(state_dir)
    if state is None:
        progress(f"No local fleet in {state_dir}")
        return
    stop_processes(state.processes)
    left = [p.name for p in state.processes if pid_alive(p.pid)]
    if left:
        raise DevFleetError(f"could not stop: {', '.join(left)}")
    for sub in ("clusters", "redis", "kubeconfigs", "logs", "pki", "registry"):
        shutil.rmtree(state_dir / sub, ignore_errors=True)
    (state_dir / "dev.json").unlink(missing_ok=True)
    progress(f"Stopped {len(state.processes)} process(es); removed {state_dir}")


def status(state_dir: Path) -> list[dict]:
    """One row per recorded process and cluster: alive or not, ready or not."""
    state = read_state(state_dir.resolve())
    if state is None:
        return []
    pki = state.state_dir / "pki" / "serving.crt"
    rows = [{"name": p.name, "pid": p.pid, "alive": pid_alive(p.pid)} for p in state.processes]
    for name, server in state.servers.items():
        row: dict = {"name": name, "server": server, "ready": readyz(server, pki)}
        if state.nodes.get(name):
            not_ready = wl.nodes_not_ready(server, pki, ADMIN_TOKEN, state.nodes[name])
            row["nodes_ready"] = f"{len(state.nodes[name]) - len(not_ready)}/{len(state.nodes[name])}"
            row["ready"] = row["ready"] and not not_ready
        rows.append(row)
    return rows
