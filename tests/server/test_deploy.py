"""fleetsync server in deploy/: a hardened Deployment, a cluster-internal Service, a
NetworkPolicy, tokens and webhook secrets from Secrets (examples refused), and a
compose service that refuses its example token."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

import pytest
import yaml

from scheduler.server.config import check_exposure, from_env
from shared.errors import FleetsyncError
from shared.spec.load import validate_file
from tests.conftest import ROOT
from tests.e2e.test_deploy import (BASE, base, generated, ingress_ports, one, parse_cli,  # noqa: F401
                               pod_spec, policy_for)


def test_server_runs_with_tokens_and_webhook_secrets(base: list[dict]) -> None:  # noqa: F811
    server = one(base, "Deployment", "fleetsync-server")
    spec = pod_spec(server)
    c = spec["containers"][0]
    args = parse_cli(c["args"])
    assert args.func.__name__ == "run_server" and args.host == "0.0.0.0" and args.port == 8085
    env = {e["name"]: e for e in c["env"]}
    tokens_file = env["FLEETSYNC_SERVER_TOKEN_FILE"]["value"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    tokens = mounts[os.path.dirname(tokens_file)]
    assert tokens["readOnly"] is True
    secret = volumes[tokens["name"]]["secret"]["secretName"]
    assert secret.startswith("fleetsync-server-tokens-")
    assert volumes[mounts["/etc/fleetsync"]["name"]]["configMap"]["name"].startswith(
        "fleetsync-fleet-")
    assert "kubeconfigs" not in {m["name"] for m in c["volumeMounts"]}   # no cluster access
    refs = [e["secretRef"]["name"] for e in c["envFrom"] if "secretRef" in e]
    assert refs == [generated(base, "Secret", "fleetsync-webhook-secrets")["metadata"]["name"]]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "http", "containerPort": 8085} in c["ports"]
    service = one(base, "Service", "fleetsync-server")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_examples_are_refused_and_real_values_start_it(base: list[dict],  # noqa: F811
                                                           tmp_path) -> None:
    data = generated(base, "Secret", "fleetsync-server-tokens")["data"]["tokens"]
    (tmp_path / "tokens").write_text(base64.b64decode(data).decode())
    with pytest.raises(FleetsyncError, match="example value 'change-me'"):
        from_env("0.0.0.0", 8085, {"FLEETSYNC_SERVER_TOKEN_FILE": str(tmp_path / "tokens")})
    (tmp_path / "tokens").write_text("0f" * 32 + "\n")
    real = from_env("0.0.0.0", 8085, {"FLEETSYNC_SERVER_TOKEN_FILE": str(tmp_path / "tokens")})
    check_exposure(real)                # beyond loopback: allowed with a token
    secrets = generated(base, "Secret", "fleetsync-webhook-secrets")["data"]
    assert base64.b64decode(secrets["PLATFORM_WEBHOOK_SECRET"]).decode() == "change-me"


def test_the_example_spec_names_the_webhook_secret_the_deployment_provides(
        base: list[dict], tmp_path) -> None:  # noqa: F811
    fleet_text = generated(base, "ConfigMap", "fleetsync-fleet")["data"]["fleet.yaml"]
    (tmp_path / "fleet.yaml").write_text(fleet_text)
    fleet, problems, _ = validate_file(str(tmp_path / "fleet.yaml"))
    assert not problems and fleet is not None
    named = {s.webhook.secret_env for s in fleet.sources.values() if s.webhook}
    provided = set(generated(base, "Secret", "fleetsync-webhook-secrets")["data"])
    assert named and named <= provided


def test_server_network_policy(base: list[dict]) -> None:  # noqa: F811
    policy = policy_for(base, "fleetsync-server")
    assert ingress_ports(policy) == {"http"}
    assert policy["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"fleetsync.io/server-access": "true"}}}]


def test_compose_runs_the_server_and_refuses_its_example_token(tmp_path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    server = compose["services"]["server"]
    assert server["command"] == ["server", "--host", "0.0.0.0", "--port", "8085"]
    assert server["ports"] == ["127.0.0.1:8085:8085"]
    env = server["environment"]
    assert env["FLEETSYNC_SERVER_TOKEN_ENV"] == "FLEETSYNC_SERVER_TOKEN"
    default = env["FLEETSYNC_SERVER_TOKEN"].split(":-", 1)[1].split("}", 1)[0]
    with pytest.raises(FleetsyncError, match="example value"):
        from_env("0.0.0.0", 8085, {"FLEETSYNC_SERVER_TOKEN_ENV": "T", "T": default})
    binary = shutil.which("docker-compose")
    if binary is not None:
        proc = subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config",
                               "--services"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "FLOWER_BASIC_AUTH": "a:b"})
        assert "server" in proc.stdout.split(), proc.stderr
