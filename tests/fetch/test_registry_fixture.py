"""The test registry itself: real pushes through its plain, TLS + basic and token fronts.

What later tests lean on: helm, crane and oras push through every front; the
fronts refuse a wrong password and an anonymous client; the token front
answers ``401`` with a ``Bearer`` challenge naming realm, service and scope and
honours only the tokens it issued; a plain-HTTP request to a TLS front is
recorded and refused; injected faults answer as asked.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.helmutil import chart, helm, run  # noqa: F401  (helm: a fixture)
from tests.support.registry import PASSWORD, USER, Registry, registry, unique_repo  # noqa: F401


def _get(url: str, ca: Path | None, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_helm_push_through_tls_and_basic_auth(registry: Registry, helm: Path, tmp_path: Path) -> None:
    directory = chart(helm, tmp_path, "web", "1.2.3", hook=False)
    run(helm, "package", str(directory), "-d", str(tmp_path))
    repo = unique_repo()
    out = registry.helm_push(helm, tmp_path / "web-1.2.3.tgz", registry.basic, repo)
    assert "Digest: sha256:" in out
    tags = registry.crane("ls", "--insecure", f"{registry.plain.host}/{repo}/web").split()
    assert tags == ["1.2.3"]
    status, _, body = _get(f"{registry.basic.url}/v2/{repo}/web/tags/list", registry.ca_file,
                           _basic(USER, PASSWORD))
    assert status == 200 and json.loads(body)["tags"] == ["1.2.3"]


def test_crane_and_oras_push_through_the_token_front(registry: Registry, tmp_path: Path) -> None:
    repo = unique_repo("artifacts")
    (tmp_path / "app.yaml").write_text("kind: ConfigMap\n")
    registry.oras("push", f"{registry.token.host}/{repo}:v1", "app.yaml", cwd=tmp_path)
    registry.crane("tag", f"{registry.token.host}/{repo}:v1", "v2")
    assert registry.crane("ls", f"{registry.token.host}/{repo}").split() == ["v1", "v2"]
    assert any(r.path.startswith("/token") for r in registry.token.requests)
    registry.oras("push", f"{registry.token_elsewhere.host}/{repo}:v3", "app.yaml", cwd=tmp_path)
    assert "v3" in registry.crane("ls", f"{registry.basic.host}/{repo}").split()


def test_basic_front_refuses_wrong_password_and_anonymous(registry: Registry) -> None:
    url = f"{registry.basic.url}/v2/"
    status, headers, _ = _get(url, registry.ca_file)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
    assert _get(url, registry.ca_file, _basic(USER, "wrong"))[0] == 401
    assert _get(url, registry.ca_file, _basic(USER, PASSWORD))[0] == 200


def test_token_front_challenges_and_issues_tokens(registry: Registry) -> None:
    front = registry.token_elsewhere
    status, headers, _ = _get(f"{front.url}/v2/some/repo/tags/list", registry.ca_file)
    challenge = headers["WWW-Authenticate"]
    assert status == 401
    assert challenge == (f'Bearer realm="{front.realm_origin}/token",service="fleetsync-registry",'
                         'scope="repository:some/repo:pull"')
    assert front.realm_origin != front.url
    assert _get(f"{front.realm_origin}/token?scope=x", registry.ca_file, _basic(USER, "no"))[0] == 401
    _, _, body = _get(f"{front.realm_origin}/token?scope=x", registry.ca_file, _basic(USER, PASSWORD))
    token = json.loads(body)["token"]
    assert _get(f"{front.url}/v2/", registry.ca_file, {"Authorization": f"Bearer {token}"})[0] == 200
    assert _get(f"{front.url}/v2/", registry.ca_file, {"Authorization": "Bearer forged"})[0] == 401
    assert _get(f"{front.url}/v2/", registry.ca_file, _basic(USER, PASSWORD))[0] == 401


def test_plain_http_to_a_tls_front_is_recorded_and_refused(registry: Registry) -> None:
    status, _, _ = _get(f"http://{registry.basic.host}/v2/", None, _basic(USER, PASSWORD))
    assert status == 400
    assert any(r.authorization for r in registry.basic.plain)


def test_injected_faults_answer_then_clear(registry: Registry) -> None:
    front = registry.plain
    front.inject("/v2/flaky/", 503, times=1)
    assert _get(f"{front.url}/v2/flaky/tags/list", None)[0] == 503
    assert _get(f"{front.url}/v2/flaky/tags/list", None)[0] == 404
