"""Controllers, a scheduler and kwok's fake Nodes on top of a local control plane.

etcd and kube-apiserver alone store objects but nothing acts on them: no Pod is
ever created, a deleted Namespace stays Terminating, nothing is
garbage-collected. For workloads to behave as on a real cluster, each cluster
of the local fleet also runs kube-controller-manager (ReplicaSets, rollouts,
Jobs, garbage collection, Namespace finalization, ServiceAccount tokens),
kube-scheduler, and kwok, which plays the kubelet of N fake Nodes: the Stages
in ``kwok_stages.yaml`` move their Pods through a life cycle, including the
failures asked for by an image tag (``broken``, ``crashloop``, ``fail``).

This module builds the command lines and talks to the apiserver over plain
HTTPS (the dev tools do not load the Kubernetes client); ``devtools.fleet``
starts, records and stops the processes.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from devtools.binaries import Binaries

STAGES = Path(__file__).with_name("kwok_stages.yaml")
NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_LABEL = "fleetsync.io/fake-node"
DEFAULT_NODES = 3
NODES_READY_TIMEOUT = 60.0
# Enough for a 1,000-Pod benchmark on three Nodes; nothing runs, so nothing is used.
NODE_CAPACITY = {"cpu": "32", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "1Ti"}


class ApiError(RuntimeError):
    """The apiserver refused or did not answer a request of the dev tools."""


def commands(name: str, kubeconfig: Path, bins: Binaries, pki: Path) -> list[tuple[str, list[str]]]:
    """(process name, argv) for the controller-manager, scheduler and kwok of cluster ``name``."""
    k = str(kubeconfig)
    auth = ["--kubeconfig", k, "--authentication-kubeconfig", k, "--authorization-kubeconfig", k,
            "--bind-address", "127.0.0.1", "--secure-port", "0", "--leader-elect=false",
            "--profiling=false"]
    return [
        (f"{name}-controller-manager", [
            str(bins.path("kube-controller-manager")), *auth, "--controllers", "*",
            "--use-service-account-credentials=false",
            "--service-account-private-key-file", str(pki / "sa.key"),
            "--root-ca-file", str(pki / "serving.crt"), "-v", "0",
        ]),
        (f"{name}-scheduler", [str(bins.path("kube-scheduler")), *auth, "-v", "0"]),
        (f"{name}-kwok", [
            str(bins.path("kwok")), "--kubeconfig", k, "--config", str(STAGES),
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            "--server-address", "127.0.0.1:0", "--cidr", "10.244.0.1/16",
            # kwok renews a Lease per Node (kwok's own default, which a --config file
            # without a KwokConfiguration loses); without it the node controller marks
            # the Nodes NotReady every 50 s until kwok's Stage makes them Ready again.
            "--node-lease-duration-seconds", "40",
        ]),
    ]


def node_names(count: int) -> list[str]:
    return [f"kwok-node-{i}" for i in range(1, count + 1)]


def node_object(name: str) -> dict:
    """A Node kwok manages: its annotation, labels a kubelet would set, capacity, no taints."""
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "kubernetes.io/role": "agent",
                       "type": "kwok", NODE_LABEL: "true"},
        },
        "spec": {},
        "status": {"capacity": dict(NODE_CAPACITY), "allocatable": dict(NODE_CAPACITY)},
    }


def request(server: str, ca_file: Path, token: str, method: str, path: str,
            body: dict | None = None, timeout: float = 10.0) -> dict:
    """One JSON request to the apiserver; refusals raise ``ApiError`` with its message."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json",
        "Accept": "application/json"})
    ctx = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("message", "")
        except ValueError:
            message = ""
        raise ApiError(f"{method} {path}: HTTP {exc.code} {message}".rstrip()) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ApiError(f"{method} {path}: {exc}") from exc


def create_nodes(server: str, ca_file: Path, token: str, names: list[str]) -> None:
    for name in names:
        request(server, ca_file, token, "POST", "/api/v1/nodes", node_object(name))


def nodes_not_ready(server: str, ca_file: Path, token: str, names: list[str]) -> list[str]:
    """Which of ``names`` do not have the condition Ready=True (all of them when unreachable)."""
    try:
        listed = request(server, ca_file, token, "GET",
                         f"/api/v1/nodes?labelSelector={NODE_LABEL}%3Dtrue", timeout=2.0)
    except ApiError:
        return list(names)
    ready = {
        item["metadata"]["name"] for item in listed.get("items", [])
        if any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (item.get("status") or {}).get("conditions") or [])
    }
    return [n for n in names if n not in ready]
