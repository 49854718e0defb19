"""What a real ``fleetsync server`` tells a request that has not proved itself: nothing of
the fleet. Webhook errors before the signature are generic (no source names, no variable
names), and a POST's ``Origin`` is compared as scheme, host and port.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest
import redis
import requests

from scheduler.server.access import same_origin
from tests.support.serverproc import ServerProcess

SECRET = "webhook-secret-for-stranger-tests"
SPEC = """sources:
  - name: platform
    url: https://git.example.com/org/gitops.git
    branch: main
    webhook: {secretEnv: PLATFORM_HOOK_SECRET}
  - name: internal-billing
    url: https://git.example.com/org/billing.git
    branch: main
    webhook: {secretEnv: BILLING_HOOK_SECRET}
  - name: quiet
    url: https://git.example.com/org/quiet.git
    branch: main
clusters:
  - name: prod
    kubeconfig: /nonexistent
applications:
  - name: web
    source: platform
    path: apps/web
    clusters: {names: [prod]}
"""


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, redis.Redis]]:
    from tests.conftest import new_redis_db

    tmp = tmp_path_factory.mktemp("server-strangers")
    url = new_redis_db(redis_url)
    (tmp / "fleet.yaml").write_text(SPEC)
    env = {**os.environ, "FLEETSYNC_REDIS_URL": url, "FLEETSYNC_FLEET": str(tmp / "fleet.yaml"),
           "FLEETSYNC_LOG_LEVEL": "INFO", "PLATFORM_HOOK_SECRET": SECRET}
    env.pop("BILLING_HOOK_SECRET", None)            # configured in the spec, not set
    server = ServerProcess(env, tmp / "server.log")
    try:
        server.wait_ready()
        yield server, redis.Redis.from_url(url)
    finally:
        server.stop()


NAMES = ("platform", "internal-billing", "quiet", "PLATFORM_HOOK_SECRET", "BILLING_HOOK_SECRET",
         "secretEnv", "github, gitlab")


def test_webhook_errors_before_the_signature_name_nothing(served) -> None:
    server, _ = served
    hook = f"{server.base}/hooks"
    body, headers = b"{}", {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    missing = [requests.post(f"{hook}/{path}", data=body, headers=headers, timeout=10)
               for path in ("github/nope", "github/quiet", "bitbucket/platform")]
    assert [(r.status_code, r.json()) for r in missing] == [(404, {"error": "no such webhook"})] * 3
    unset = requests.post(f"{hook}/github/internal-billing", data=body, headers=headers,
                          timeout=10)
    assert unset.status_code == 503
    unsigned = requests.post(f"{hook}/github/platform", data=body, headers=headers, timeout=10)
    forged = requests.post(f"{hook}/github/platform", data=body, timeout=10, headers={
        **headers, "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert unsigned.status_code == forged.status_code == 401
    assert unsigned.text == forged.text                 # which check failed is not said
    for answer in (*missing, unset, unsigned, forged):
        assert not [n for n in NAMES if n in answer.text], answer.text
    log = server.log.read_text()                        # the operator's log says it all
    assert "BILLING_HOOK_SECRET" in log and "no source named 'nope'" in log
    assert "takes no webhooks" in log and "no X-Hub-Signature-256 header" in log


@pytest.mark.parametrize("origin", ["http://127.0.0.1", "http://127.0.0.1:1",
                                    "https://127.0.0.1:{port}", "http://localhost:{port}",
                                    "null"])
def test_a_post_from_another_origin_is_refused(served, origin: str) -> None:
    server, broker = served
    before = broker.llen("reconcile")
    answer = requests.post(f"{server.base}/api/v1/sync", json={"app": "web"}, timeout=10,
                           headers={"Origin": origin.format(port=server.port)})
    assert answer.status_code == 403, answer.text
    assert broker.llen("reconcile") == before


def test_a_post_from_the_servers_own_origin_or_a_script_passes(served) -> None:
    server, broker = served
    before = broker.llen("reconcile")
    for headers in ({"Origin": server.base}, {}):
        answer = requests.post(f"{server.base}/api/v1/sync", json={"app": "web"}, timeout=10,
                               headers=headers)
        assert answer.status_code == 202, answer.text
    assert broker.llen("reconcile") == before + 2


def test_origins_are_scheme_host_and_port() -> None:
    assert same_origin("http://127.0.0.1:8085", "http", "127.0.0.1:8085")
    assert same_origin("https://Fleet.Example.com", "https", "fleet.example.com:443")
    assert same_origin("http://[::1]:8085", "http", "[::1]:8085")
    assert not same_origin("http://127.0.0.1", "http", "127.0.0.1:8085")
    assert not same_origin("https://127.0.0.1:8085", "http", "127.0.0.1:8085")
    assert not same_origin("http://localhost:8085", "http", "127.0.0.1:8085")
    assert not same_origin("null", "http", "127.0.0.1:8085")
    assert not same_origin("http://127.0.0.1:99999", "http", "127.0.0.1:99999")
