"""What the fleet benchmark syncs: its clusters, applications, Git repository and fleet spec.

C simulated clusters share A real apiservers (``--apiservers``; by default one
each): cluster ``c0042`` is its own kubeconfig file (a copy of its apiserver's,
at a path of its own) and name, placed round-robin on the apiservers. Every
cluster has its own applications (``c0042-app-0001``...), each selected by
that cluster's name only, so objects and inventories of clusters that share an
apiserver never collide, and ``--clusters 1 --apps 3000`` and ``--clusters
1000 --apps 3`` sync the same 3,000 application directories.

Each application is the Flux benchmark's app: a Deployment (scaled to zero by
default), a ServiceAccount, a Service and an Ingress.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubeapi import Api

NAMESPACE = "bench"


@dataclass(frozen=True)
class Layout:
    clusters: dict[str, str]            # simulated cluster -> its own kubeconfig file
    placement: dict[str, str]           # simulated cluster -> apiserver name
    apps: dict[str, list[str]]          # simulated cluster -> its applications

    @property
    def units(self) -> int:
        return sum(len(a) for a in self.apps.values())

    def all_apps(self) -> list[str]:
        return [app for apps in self.apps.values() for app in apps]


def cluster_names(count: int) -> list[str]:
    return [f"c{i:04d}" for i in range(1, count + 1)]


def app_names(cluster: str, count: int) -> list[str]:
    return [f"{cluster}-app-{i:04d}" for i in range(1, count + 1)]


def layout(root: Path, apiservers: dict[str, str], clusters: int, apps: int) -> Layout:
    """Kubeconfig copies under ``root/kubeconfigs`` for ``clusters`` simulated clusters
    spread round-robin over ``apiservers`` (name -> kubeconfig)."""
    servers = sorted(apiservers)
    folder = root / "kubeconfigs"
    folder.mkdir(parents=True, exist_ok=True)
    configs, placement, names = {}, {}, {}
    for index, cluster in enumerate(cluster_names(clusters)):
        server = servers[index % len(servers)]
        path = folder / f"{cluster}.yaml"
        shutil.copyfile(apiservers[server], path)
        path.chmod(0o600)
        configs[cluster], placement[cluster] = str(path), server
        names[cluster] = app_names(cluster, apps)
    return Layout(configs, placement, names)


def app_objects(name: str, port: int = 80, replicas: int = 0) -> list[dict]:
    labels = {"app": name}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": NAMESPACE},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": name,
                                        "containers": [{"name": "app", "image": "nginx:1.25"}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
         "spec": {"selector": labels, "ports": [{"port": port, "targetPort": 80}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": name, "namespace": NAMESPACE},
         "spec": {"rules": [{"host": f"{name}.example.com", "http": {"paths": [{
             "path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": name, "port": {"number": port}}}}]}}]}},
    ]


def write_app(repo: Path, name: str, port: int = 80, replicas: int = 0) -> None:
    path = repo / "apps" / name / "app.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n---\n".join(json.dumps(o) for o in app_objects(name, port, replicas))
                    + "\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(root: Path, apps: list[str], replicas: int = 0) -> tuple[Path, Path]:
    """A working repository with every app, and a bare clone of it (the source)."""
    repo, bare = root / "repo", root / "repo.git"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@example.com")
    for name in apps:
        write_app(repo, name, replicas=replicas)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "apps")
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    git(repo, "remote", "add", "origin", str(bare))
    return repo, bare


def write_fleet_spec(path: Path, bare: Path, fleet: Layout) -> None:
    """The fleet spec: one source, every cluster, each application on its cluster only."""
    lines = ["sources:", "  - name: bench", f"    url: file://{bare}", "    branch: main",
             "    interval: 10m", "clusters:"]
    for name, kubeconfig in fleet.clusters.items():
        lines += [f"  - name: {name}", f"    kubeconfig: {kubeconfig}",
                  "    labels: {bench: 'yes'}", "    interval: 10m"]
    lines.append("applications:")
    for cluster, apps in fleet.apps.items():
        for name in apps:
            lines += [f"  - name: {name}", "    source: bench", f"    path: apps/{name}",
                      f"    clusters: {{names: [{cluster}]}}"]
    path.write_text("\n".join(lines) + "\n")


def write_spec(path: Path, bare: Path, clusters: dict[str, str], apps: list[str]) -> None:
    """A fleet spec with every application on every cluster (one set of apps shared by
    all clusters, as the webhook and worker memory benchmarks use)."""
    lines = ["sources:", "  - name: bench", f"    url: file://{bare}", "    branch: main",
             "    interval: 10m", "clusters:"]
    for name, kubeconfig in clusters.items():
        lines += [f"  - name: {name}", f"    kubeconfig: {kubeconfig}", "    labels: {bench: 'yes'}",
                  "    interval: 10m"]
    lines.append("applications:")
    for name in apps:
        lines += [f"  - name: {name}", "    source: bench", f"    path: apps/{name}",
                  "    clusters: {matchLabels: {bench: 'yes'}}"]
    path.write_text("\n".join(lines) + "\n")


def create_namespace(kubeconfig: str) -> None:
    """The bench namespace on the cluster of ``kubeconfig`` (already there is fine)."""
    Api(kubeconfig).ensure_namespace(NAMESPACE)
