"""An ``oci:`` source end to end: artifacts pushed with oras to the real registry (TLS and
basic auth), fetched, verified and rendered by real workers on real Redis, applied to
two real API servers by beat's schedule. A new tag in the semver range rolls out on
the next interval; an unsigned one, one signed by another key and a signed one whose
layer has a ``../`` member are refused, the units stay at the last verified digest
and their status says why; ``fleetsync history``
shows the tag, the digest and the artifact's annotations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from tests.conftest import ROOT, new_redis_db
from tests.support.ociartifacts import CosignKey, push_artifact, sign, tgz
from tests.support.registry import PASSWORD, USER, Registry, registry, unique_repo  # noqa: F401
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
CLUSTERS = ("dev-1", "dev-2")


def manifests(namespace: str, value: str) -> bytes:
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
               {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": namespace},
                "data": {"value": value, "cluster": "${cluster_name}"}}]
    return tgz({f"app/{i}.yaml": json.dumps(o) for i, o in enumerate(objects)})


def write_spec(stack: Stack, registry: Registry, repo: str, key: CosignKey) -> None:
    lines = ["sources:", "  - name: config",
             f"    oci: {{url: 'oci://{registry.basic.host}/{repo}', semver: '>=1.0.0 <2.0.0'}}",
             "    auth: {usernameEnv: REG_USER, passwordEnv: REG_PASSWORD}",
             f"    verify: {{cosign: {{publicKey: {key.public}}}}}",
             f"    interval: {stack.interval}s", "clusters:"]
    for name in CLUSTERS:
        lines += [f"  - name: {name}", f"    kubeconfig: {stack.kubeconfigs[name]}",
                  "    labels: {team: t}", f"    interval: {stack.interval}s"]
    lines += ["applications:", f"  - name: {stack.app}", "    source: config", "    path: app",
              "    clusters: {matchLabels: {team: t}}", "    wait: false"]
    stack.spec.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def oci_stack(dev_fleet, redis_url, registry, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oci-run")
    s = Stack(tmp, new_redis_db(redis_url), dev_fleet.clusters, env_extra={
        "SSL_CERT_FILE": str(registry.ca_file), "REG_USER": USER, "REG_PASSWORD": PASSWORD})
    s.repo_name = unique_repo("config")           # type: ignore[attr-defined]
    s.trusted = CosignKey.make(tmp / "keys", "trusted")    # type: ignore[attr-defined]
    yield s
    s.stop()


def cli(s: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT, env=s.env(),
                          capture_output=True, text=True, timeout=120)


def source_error(s: Stack) -> str:
    return s.store.source_record("config").error


def value_on(stack: Stack, kubeconfig: str) -> str:
    from kubernetes import config

    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    try:
        return api.read_namespaced_config_map("settings", stack.namespace).data["value"]
    finally:
        api.api_client.close()


def test_an_oci_source_rolls_out_verified_digests_only(oci_stack: Stack, registry: Registry) -> None:
    s, repo, trusted = oci_stack, oci_stack.repo_name, oci_stack.trusted   # type: ignore[attr-defined]
    work = s.tmp / "push"
    first = push_artifact(registry, repo, "1.0.0", manifests(s.namespace, "one"), work / "1",
                          annotations={"org.opencontainers.image.source": "https://git.example/cfg",
                                       "org.opencontainers.image.revision": "main@sha1:aa11"})
    sign(registry, repo, first, trusted, work / "s1")
    write_spec(s, registry, repo, trusted)
    s.start_worker("w1")
    s.start_beat()
    for name in CLUSTERS:
        s.wait(f"{name} Ready at 1.0.0", lambda n=name: s.ready_at(n, first[7:]), 120)
    assert value_on(s, s.kubeconfigs["dev-1"]) == "one"

    second = push_artifact(registry, repo, "1.1.0", manifests(s.namespace, "two"), work / "2")
    sign(registry, repo, second, trusted, work / "s2")
    push_artifact(registry, repo, "2.0.0", manifests(s.namespace, "out of range"), work / "3")
    for name in CLUSTERS:
        s.wait(f"{name} Ready at 1.1.0", lambda n=name: s.ready_at(n, second[7:]), 90)
    assert value_on(s, s.kubeconfigs["dev-2"]) == "two"

    unsigned = push_artifact(registry, repo, "1.2.0", manifests(s.namespace, "unsigned"), work / "4")
    s.wait("the unsigned digest refused",
           lambda: f"artifact {unsigned} is not signed" in source_error(s), 90)
    synced = cli(s, "sync", s.app, "--cluster", "dev-1", "--wait", "--timeout", "60", "-o", "json")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    status = s.status("dev-1")
    assert status["revision"] == second[7:] and status["phase"] == "Ready", status
    assert (f"source config stays at {second[7:19]}: source config: artifact {unsigned} is "
            "not signed") in status["message"]
    stranger = CosignKey.make(s.tmp / "keys", "stranger")
    resigned = push_artifact(registry, repo, "1.3.0", manifests(s.namespace, "stranger"), work / "5")
    sign(registry, repo, resigned, stranger, work / "s5")
    s.wait("the digest signed by another key refused",
           lambda: f"artifact {resigned} has a signature that the public key did not make"
           in source_error(s), 90)
    synced = cli(s, "sync", s.app, "--cluster", "dev-2", "--wait", "--timeout", "60", "-o", "json")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "the public key did not make" in s.status("dev-2")["message"]
    escaping = push_artifact(registry, repo, "1.4.0", tgz({"app/ok.yaml": "{}", "../x.yaml": "{}"}),
                             work / "6")
    sign(registry, repo, escaping, trusted, work / "s6")      # signed, and still refused
    s.wait("the signed digest with a ../ member refused",
           lambda: f"artifact {escaping}: member '../x.yaml' has a path that leaves the artifact"
           in source_error(s), 90)
    assert s.store.source_record("config").revision == second[7:]
    for name in CLUSTERS:
        assert s.status(name)["revision"] == second[7:]
        assert value_on(s, s.kubeconfigs[name]) == "two"

    entries = json.loads(cli(s, "history", s.app, "--cluster", "dev-1", "-o", "json").stdout)
    subjects = {e["revision"]: e["subject"] for e in entries}
    assert subjects[first[7:]] == (f"oci 1.0.0 {first} (source https://git.example/cfg, "
                                   "revision main@sha1:aa11)")
    assert subjects[second[7:]] == f"oci 1.1.0 {second}"
    assert not {unsigned[7:], resigned[7:]} & set(subjects)
    table = cli(s, "history", s.app, "--cluster", "dev-1").stdout
    assert f"    artifact: 1.1.0 {second}\n" in table + "\n"
    assert f"    artifact: 1.0.0 {first} (source https://git.example/cfg" in table
    logs = "".join(p.read_text() for p in Path(s.tmp).glob("*.log"))
    assert PASSWORD not in logs
