"""Helm charts from an OCI registry end to end: ``helm push`` to a real registry (TLS and
basic auth), real workers and beat, the session's two control planes.

The chart is rendered and applied on ``dev-1`` and ``dev-2`` with different values;
the source's revision is the chart's manifest digest; the chart archive is pulled
once for the host; a new version within the range, pushed while everything runs,
is picked up at the next interval. Bad input (an unknown registry host, a wrong
password, a version that is not there) fails with its reason, names the variable
and not the password, and applies nothing (``fleetsync sync --local``: the same
stages in one process). A registry behind a Bearer token service serves too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.conftest import ROOT, new_redis_db
from tests.support.helmutil import helm  # noqa: F401  (a fixture)
from tests.support.ocifleet import push_chart, write_chart_spec
from tests.support.registry import PASSWORD, USER, Registry, registry, unique_repo  # noqa: F401
from tests.support.stack import Stack

pytestmark = pytest.mark.k8s
TIMEOUT = 120


@pytest.fixture()
def stack(dev_fleet, redis_url: str, registry: Registry, helm: Path,
          tmp_path: Path) -> Iterator[Stack]:
    found = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters,
                  env_extra={"OCI_USER": USER, "OCI_PASS": PASSWORD,
                             "SSL_CERT_FILE": str(registry.ca_file), "FLEETSYNC_HELM_BIN": str(helm)})
    try:
        yield found
    finally:
        found.stop()


def _apps(kube_clients: dict, cluster: str) -> Any:
    from kubernetes import client

    return client.AppsV1Api(kube_clients[cluster])


def _deployment(kube_clients: dict, cluster: str, namespace: str) -> Any:
    return _apps(kube_clients, cluster).read_namespaced_deployment("shop-web", namespace)


def test_a_pushed_chart_rolls_out_on_two_clusters_and_a_new_version_follows(
        stack: Stack, registry: Registry, helm: Path, tmp_path: Path, kube_clients: dict) -> None:
    repo = unique_repo()
    first = push_chart(registry, helm, tmp_path, repo, "0.1.0")
    write_chart_spec(stack, f"oci://{registry.basic.host}/{repo}", "0.x")
    registry.basic.clear()
    stack.start_worker("w1")
    stack.start_beat()
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} Ready at 0.1.0", lambda c=cluster: stack.ready_at(c, first),
                   timeout=TIMEOUT)
    from kubernetes import client

    assert _deployment(kube_clients, "dev-1", stack.namespace).spec.replicas == 3
    assert _deployment(kube_clients, "dev-2", stack.namespace).spec.replicas == 1
    ports = {c: client.CoreV1Api(kube_clients[c]).read_namespaced_service(
        "shop-web", stack.namespace).spec.ports[0].port for c in ("dev-1", "dev-2")}
    assert ports == {"dev-1": 80, "dev-2": 8081}
    layer = json.loads(registry.crane("manifest", "--insecure",
                                      f"{registry.plain.host}/{repo}/web:0.1.0"))["layers"][0]
    pulls = [r for r in registry.basic.requests
             if r.method == "GET" and r.path.endswith(f"/blobs/{layer['digest']}")
             and r.authorization]                         # not the 401 that asks for them
    assert len(pulls) == 1, pulls                         # one download for the host

    second = push_chart(registry, helm, tmp_path, repo, "0.2.0")
    push_chart(registry, helm, tmp_path, repo, "1.0.0")          # out of range: ignored
    for cluster in ("dev-1", "dev-2"):
        stack.wait(f"{cluster} Ready at 0.2.0", lambda c=cluster: stack.ready_at(c, second),
                   timeout=TIMEOUT)
    labels = _deployment(kube_clients, "dev-2", stack.namespace).metadata.labels
    assert labels["helm.sh/chart"] == "web-0.2.0"
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*.log"))
    assert PASSWORD not in logs


def _sync_local(stack: Stack, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "sync", stack.app, "--cluster",
                           "dev-1", "--local", "-o", "json"], cwd=ROOT,
                          env={**stack.env(), **env}, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("case", ["unknown-host", "wrong-password", "missing-version"])
def test_bad_registry_input_fails_clearly_and_applies_nothing(
        case: str, stack: Stack, registry: Registry, helm: Path, tmp_path: Path,
        kube_clients: dict) -> None:
    repo = unique_repo()
    push_chart(registry, helm, tmp_path, repo, "0.1.0")
    host, env = registry.basic.host, {}
    if case == "unknown-host":
        host = "no-such-registry.invalid"
        expected = "cannot reach the registry no-such-registry.invalid"
    elif case == "wrong-password":
        env = {"OCI_PASS": "hunter2-wrong"}
        expected = ("refused the credentials from auth.usernameEnv OCI_USER / auth.passwordEnv "
                    "OCI_PASS")
    else:
        expected = f"chart web: no version matches '2.0.0' in {host}/{repo}/web (tags: 0.1.0)"
    write_chart_spec(stack, f"oci://{host}/{repo}", "0.1.0" if case != "missing-version" else "2.0.0")
    proc = _sync_local(stack, **env)
    assert proc.returncode != 0, proc.stdout
    assert expected in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    status = stack.status("dev-1")
    if case == "unknown-host":      # transient (DNS may come back): retried, never Ready
        assert status["phase"] != "Ready", status
    else:
        assert status["phase"] == "Failed" and expected in status["message"], status
    from kubernetes import client

    names = [ns.metadata.name for ns in client.CoreV1Api(kube_clients["dev-1"]).list_namespace().items]
    assert stack.namespace not in names


def test_a_registry_behind_a_token_service_and_a_plain_http_registry(
        stack: Stack, registry: Registry, helm: Path, tmp_path: Path, kube_clients: dict) -> None:
    repo = unique_repo()
    digest = push_chart(registry, helm, tmp_path, repo, "0.3.1", front=registry.token)
    write_chart_spec(stack, f"oci://{registry.token.host}/{repo}", "~0.3.0", interval="1h")
    registry.token.clear()
    proc = _sync_local(stack)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stack.status("dev-1")["revision"] == digest
    assert any(r.path.startswith("/token") and (r.authorization or "").startswith("Basic ")
               for r in registry.token.requests)
    write_chart_spec(stack, f"oci://{registry.plain.host}/{repo}", "0.3.1", auth=False, insecure=True)
    proc = _sync_local(stack)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _deployment(kube_clients, "dev-1", stack.namespace).metadata.labels[
        "helm.sh/chart"] == "web-0.3.1"
    assert os.environ.get("OCI_PASS") is None
