"""The GitOps tutorial's exercises through the CLI, as an operator types them.

`fleetsync sync --local`, `diff`, `render` and `validate` against a real local
cluster with controllers and kwok Nodes, and a real Git repository laid out as
the tutorial lays it out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import tutorial
from tests.conftest import ROOT
from tests.support.gitutil import GitRepo

pytestmark = pytest.mark.k8s


class Operator:
    def __init__(self, tmp: Path, kubeconfig: str, redis_url: str) -> None:
        self.repo = GitRepo(tmp / "gitops")
        tutorial.write_tutorial(self.repo.path)
        self.repo.commit("tutorial layout")
        self.repo.push()
        self.kubeconfig = kubeconfig
        self.redis_url = redis_url
        self.spec = tmp / "fleet.yaml"
        self.spec.write_text(
            "sources:\n  - name: gitops\n"
            f"    url: {self.repo.bare_url()}\n    branch: main\n"
            "clusters:\n  - name: production\n"
            f"    kubeconfig: {kubeconfig}\n    labels: {{env: production}}\n"
            "applications:\n  - name: tutorial\n    source: gitops\n"
            "    path: clusters/${cluster_name}\n    clusters: {names: [production]}\n")

    def fleetsync(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "FLEETSYNC_FLEET": str(self.spec), "FLEETSYNC_REDIS_URL": self.redis_url}
        return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    def sync(self) -> dict:
        proc = self.fleetsync("sync", "tutorial", "--cluster", "production", "--local", "-o", "json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def kubectl(self, *args: str) -> str:
        kubectl = Path(sys.executable).with_name("kubectl")
        return subprocess.run([str(kubectl), "--kubeconfig", self.kubeconfig, *args],
                              capture_output=True, text=True, check=True).stdout

    def image(self) -> str:
        return self.kubectl("get", "deploy", "web-app", "-n", "web", "-o",
                            "jsonpath={.spec.template.spec.containers[0].image}")


@pytest.fixture(scope="module")
def operator(workload_fleet, redis_url, tmp_path_factory):
    """The cluster with workloads, named production in this spec: Pods really run, so a
    sync is Ready only once they are (the tutorial's namespaces are used by no other test)."""
    yield Operator(tmp_path_factory.mktemp("tutorial"), workload_fleet.clusters["work-1"],
                   redis_url)


def test_validate_and_render(operator):
    proc = operator.fleetsync("validate")
    assert proc.returncode == 0 and "1 sync unit(s)" in proc.stdout
    rendered = operator.fleetsync("render", "tutorial", "--cluster", "production")
    assert rendered.returncode == 0, rendered.stderr
    assert "replicas: 3" in rendered.stdout and "image: nginx:1.25.3" in rendered.stdout
    assert "env: production" in rendered.stdout


def running_pods(operator, app: str) -> int:
    return len(operator.kubectl("get", "pods", "-n", "web", "-l", f"app={app}",
                                "--field-selector=status.phase=Running", "-o", "name").split())


def test_first_sync_then_a_second_sync_writes_nothing(operator):
    first = operator.sync()
    assert first["phase"] == "Ready" and first["counts"]["created"] == 9
    assert running_pods(operator, "web-app") == 3       # Ready means the Pods are
    second = operator.sync()
    assert second["counts"]["unchanged"] == 9 and second["writes"] == 0


def test_scale_by_hand_is_reported_by_diff_and_corrected(operator):
    operator.kubectl("scale", "deployment", "web-app", "-n", "web", "--replicas", "5")
    diff = operator.fleetsync("diff", "tutorial", "--cluster", "production")
    assert diff.returncode == 1
    assert "Deployment/web/web-app" in diff.stdout and "spec.replicas: 5 -> 3" in diff.stdout
    assert "spec.replicas: 5 -> 3 (by kubectl" in diff.stdout      # who scaled it, and when
    result = operator.sync()
    assert result["drift_corrections"] == 1
    assert operator.kubectl("get", "deploy", "web-app", "-n", "web", "-o",
                            "jsonpath={.spec.replicas}") == "3"
    assert operator.fleetsync("diff", "tutorial", "--cluster", "production").returncode == 0


def test_image_update_and_git_revert(operator):
    tutorial.set_web_image_tag(operator.repo.path, "1.27.0")
    change = operator.repo.commit("nginx 1.27.0")
    operator.repo.push()
    assert operator.sync()["revision"] == change
    assert operator.image() == "nginx:1.27.0"
    operator.repo.revert(change)
    operator.repo.push()
    operator.sync()
    assert operator.image() == "nginx:1.25.3"


def test_removed_app_is_pruned(operator):
    tutorial.remove_app(operator.repo.path, "production", "api-service")
    operator.repo.commit("remove api-service")
    operator.repo.push()
    result = operator.sync()
    assert result["counts"]["pruned"] == 2
    assert "api-service" not in operator.kubectl("get", "deploy,svc", "-n", "web", "-o", "name")


def test_invalid_object_writes_nothing_and_is_named(operator):
    before = operator.kubectl("get", "cm", "-A", "-o", "jsonpath={.items[*].metadata.resourceVersion}")
    operator.repo.write("clusters/production/bad.yaml", json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad", "namespace": "web"},
        "spec": {"ports": [{"port": 99999}]}}))
    operator.repo.write("clusters/production/good.yaml", json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "good", "namespace": "web"},
        "data": {"a": "b"}}))
    kustomization = operator.repo.path / "clusters/production/kustomization.yaml"
    text = kustomization.read_text().replace("- namespace.yaml", "- namespace.yaml\n- good.yaml\n- bad.yaml")
    operator.repo.write("clusters/production/kustomization.yaml", text)
    operator.repo.commit("one invalid object")
    operator.repo.push()
    proc = operator.fleetsync("sync", "tutorial", "--cluster", "production", "--local")
    assert proc.returncode == 1
    assert "Service/web/bad" in proc.stderr and "99999" in proc.stderr
    assert "good" not in operator.kubectl("get", "cm", "-n", "web", "-o", "name")
    assert operator.kubectl("get", "cm", "-A", "-o",
                            "jsonpath={.items[*].metadata.resourceVersion}") == before
