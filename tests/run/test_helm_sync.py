"""Chart applications end to end: ``fleetsync sync --local`` against the session's two
control planes, from a real Helm repository over loopback HTTP and from a Git path.

Rendered, applied, pruned, drift-corrected and upgraded (a version bump in Git) on
``dev-1`` and ``dev-2`` with different values; bad input fails with its reason and
nothing of the unit is applied. Bare control planes run no controllers, so the
applications say ``wait: false``. The charts here carry no hook: a bare control plane
never completes a hook Job (tests/apply/test_helm_hooks.py runs hooks where Pods run).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.state.status import StatusStore

from tests.conftest import ROOT, new_redis_db
from tests.support.gitutil import GitRepo
from tests.support.helmutil import ChartServer, chart, helm, set_version  # noqa: F401  (helm: a fixture)

pytestmark = pytest.mark.k8s


class Fleet:
    """A fleet spec with one chart application on dev-1 and dev-2, and the means to sync it."""

    def __init__(self, tmp: Path, redis_url: str, clusters: dict[str, str], source: list[str],
                 app: dict[str, Any]) -> None:
        self.tmp, self.redis_url, self.kubeconfigs = tmp, redis_url, clusters
        self.name = "web" + uuid.uuid4().hex[:6]
        self.namespace = f"ns-{self.name}"
        self.source, self.app = source, app
        self.spec = tmp / "fleet.yaml"
        self.write()

    def write(self, **app: Any) -> None:
        self.app.update(app)
        lines = ["sources:", *self.source, "clusters:"]
        for name, kubeconfig in self.kubeconfigs.items():
            lines += [f"  - name: {name}", f"    kubeconfig: {kubeconfig}",
                      "    labels: {team: t, env: " + ("prod" if name == "dev-1" else "dev") + "}",
                      "    vars: {replicas: \"" + ("3" if name == "dev-1" else "1") + "\"}"]
        body = {"name": self.name, "clusters": {"matchLabels": {"team": "t"}},
                "namespace": self.namespace, "createNamespace": True, "wait": False, **self.app}
        lines += ["applications:", "  - " + json.dumps(body)]
        self.spec.write_text("\n".join(lines) + "\n")

    def sync(self, cluster: str) -> subprocess.CompletedProcess:
        env = {"FLEETSYNC_REDIS_URL": self.redis_url, "FLEETSYNC_FLEET": str(self.spec),
               "FLEETSYNC_CACHE_DIR": str(self.tmp / "cache"), "PYTHONPATH": str(ROOT),
               "FLEETSYNC_ALLOW_LOCAL_SOURCES": "true", "FLEETSYNC_HELM_BIN": str(HELM[0]),
               "PATH": "/usr/bin:/bin", "HOME": str(self.tmp)}
        return subprocess.run([sys.executable, "-m", "scheduler.cli", "sync", self.name,
                               "--cluster", cluster, "--local", "-o", "json"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=240)

    def ready(self, cluster: str) -> dict[str, Any]:
        proc = self.sync(cluster)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["phase"] == "Ready", result
        return result


HELM: list[Path] = []


@pytest.fixture(autouse=True)
def _helm_path(helm: Path) -> None:
    HELM[:] = [helm]


def apps_api(kube_clients: dict, cluster: str) -> Any:
    from kubernetes import client

    return client.AppsV1Api(kube_clients[cluster])


def core_api(kube_clients: dict, cluster: str) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube_clients[cluster])


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


VALUES = {"replicaCount": "${replicas}"}
OVERLAY = [{"clusters": {"matchLabels": {"env": "dev"}}, "values": {"service": {"port": 8081}}}]


def test_a_repository_chart_on_two_clusters_applied_pruned_and_drift_corrected(
        helm: Path, dev_fleet, redis_url: str, tmp_path: Path, kube_clients: dict) -> None:
    server = ChartServer(helm, tmp_path / "repo")
    try:
        server.publish(chart(helm, _fresh(tmp_path / "v1"), hook=False))
        fleet = Fleet(tmp_path, new_redis_db(redis_url), dev_fleet.clusters,
                      ["  - name: charts", f"    helmRepository: {server.url}",
                       "    insecure: true", "    interval: 1m"],
                      {"source": "charts", "chart": {"name": "web", "version": "0.1.x"},
                       "helm": {"releaseName": "shop", "values": VALUES,
                                "valuesByCluster": OVERLAY}})
        for cluster in ("dev-1", "dev-2"):
            fleet.ready(cluster)
        name = "shop-web"
        assert apps_api(kube_clients, "dev-1").read_namespaced_deployment(
            name, fleet.namespace).spec.replicas == 3
        assert apps_api(kube_clients, "dev-2").read_namespaced_deployment(
            name, fleet.namespace).spec.replicas == 1
        ports = {c: core_api(kube_clients, c).read_namespaced_service(
            name, fleet.namespace).spec.ports[0].port for c in ("dev-1", "dev-2")}
        assert ports == {"dev-1": 80, "dev-2": 8081}
        assert server.counts["/web-0.1.0.tgz"] == 1          # one download for the host

        # drift: scaled by hand, put back by the next sync
        apps_api(kube_clients, "dev-1").patch_namespaced_deployment(
            name, fleet.namespace, {"spec": {"replicas": 7}})
        result = fleet.ready("dev-1")
        assert "Deployment" in json.dumps(result.get("changed", {})), result
        assert apps_api(kube_clients, "dev-1").read_namespaced_deployment(
            name, fleet.namespace).spec.replicas == 3

        # prune: values that drop the ServiceAccount
        core_api(kube_clients, "dev-1").read_namespaced_service_account(name, fleet.namespace)
        fleet.write(helm={"releaseName": "shop", "values": {**VALUES,
                                                            "serviceAccount": {"create": False}}})
        fleet.ready("dev-1")
        names = [sa.metadata.name for sa in core_api(kube_clients, "dev-1")
                 .list_namespaced_service_account(fleet.namespace).items]
        assert name not in names
    finally:
        server.close()


def test_a_git_chart_is_upgraded_by_a_version_bump(helm: Path, dev_fleet, redis_url: str,
                                                   tmp_path: Path, kube_clients: dict) -> None:
    repo = GitRepo(tmp_path / "gitops")
    directory = chart(helm, _fresh(repo.path / "charts"), hook=False)
    repo.commit("the web chart")
    repo.push()
    fleet = Fleet(tmp_path, new_redis_db(redis_url), dev_fleet.clusters,
                  ["  - name: gitops", f"    url: {repo.bare_url()}", "    branch: main"],
                  {"source": "gitops", "path": "charts/web", "helm": {"values": VALUES}})
    fleet.ready("dev-2")
    name = fleet.name          # the release name holds the chart name: helm uses it alone
    live = apps_api(kube_clients, "dev-2").read_namespaced_deployment(name, fleet.namespace)
    assert live.metadata.labels["helm.sh/chart"] == "web-0.1.0"
    set_version(directory, "0.2.0")
    repo.commit("web 0.2.0")
    repo.push()
    fleet.ready("dev-2")
    live = apps_api(kube_clients, "dev-2").read_namespaced_deployment(name, fleet.namespace)
    assert live.metadata.labels["helm.sh/chart"] == "web-0.2.0"


@pytest.mark.parametrize("case", ["missing-version", "template-error"])
def test_bad_charts_fail_and_apply_nothing(case: str, helm: Path, dev_fleet, redis_url: str,
                                           tmp_path: Path, kube_clients: dict) -> None:
    repo = GitRepo(tmp_path / "gitops")
    directory = chart(helm, _fresh(repo.path / "charts"), hook=False)
    service = directory / "templates" / "service.yaml"
    service.write_text(service.read_text().replace("spec:", "spec:\n  x: {{ .Values.no.such }}", 1))
    repo.commit("a broken service template")
    repo.push()
    server = ChartServer(helm, tmp_path / "repo")
    try:
        server.publish(chart(helm, _fresh(tmp_path / "v1"), hook=False))
        if case == "missing-version":
            source = ["  - name: charts", f"    helmRepository: {server.url}", "    insecure: true"]
            app: dict[str, Any] = {"source": "charts", "chart": {"name": "web", "version": "2.0.0"}}
            expected = "chart web: no version matches '2.0.0' (versions: 0.1.0)"
        else:
            source = ["  - name: gitops", f"    url: {repo.bare_url()}", "    branch: main"]
            app = {"source": "gitops", "path": "charts/web"}
            expected = "charts/web: helm template failed: template: web/templates/service.yaml:"
        fleet = Fleet(tmp_path, new_redis_db(redis_url), dev_fleet.clusters, source, app)
        proc = fleet.sync("dev-1")
        assert proc.returncode != 0, proc.stdout
        assert expected in proc.stderr, proc.stderr
        status = StatusStore(redis.Redis.from_url(fleet.redis_url, decode_responses=True)
                             ).get_status(fleet.name, "dev-1").to_dict()
        assert status["phase"] == "Failed" and expected in status["message"], status
        names = [ns.metadata.name for ns in core_api(kube_clients, "dev-1").list_namespace().items]
        assert fleet.namespace not in names
    finally:
        server.close()
