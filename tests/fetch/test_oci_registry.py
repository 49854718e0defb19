"""The registry client against a real registry: tags, manifests, blobs, auth and errors.

Content is pushed with the real oras and crane CLIs; the client reads it back
through the TLS + basic, token and plain fronts of ``tests.support.registry``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from shared.errors import SourceError, TransientError
from devtools.registryproxy import RegistryProxy
from tests.support.registry import PASSWORD, USER, Registry, registry, unique_repo  # noqa: F401
from workers.fetch.ociauth import Login, parse_challenge, realm_trusted, token_request
from workers.fetch.ociregistry import RegistryClient

LOGIN = Login(USER, PASSWORD, "auth.usernameEnv REG_USER / auth.passwordEnv REG_PASS")


@pytest.fixture(autouse=True)
def _ca(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(registry.ca_file))


def _artifact(registry: Registry, tmp_path: Path, tags: list[str], body: bytes = b"kind: x\n") -> str:
    repo = unique_repo("artifacts")
    (tmp_path / "app.yaml").write_bytes(body)
    registry.oras("push", f"{registry.plain.host}/{repo}:{tags[0]}", "app.yaml", "--plain-http",
                  cwd=tmp_path)
    for tag in tags[1:]:
        registry.crane("tag", "--insecure", f"{registry.plain.host}/{repo}:{tags[0]}", tag)
    return repo


def _client(front, login: Login | None = LOGIN, **kw) -> RegistryClient:  # type: ignore[no-untyped-def]
    return RegistryClient(front.host, who="source oci", login=login, **kw)


def test_tags_page_by_page_through_tls_and_basic_auth(registry: Registry, tmp_path: Path) -> None:
    tags = ["1.0.0", "1.1.0", "1.2.0", "2.0.0", "latest"]
    repo = _artifact(registry, tmp_path, tags)
    client = _client(registry.basic)
    client.page_size = 2
    assert sorted(client.tags(repo)) == sorted(tags)
    pages = [r for r in registry.basic.requests if "/tags/list" in r.path and r.authorization]
    assert len(pages) >= 3
    with pytest.raises(SourceError, match="more than 3 tags"):
        client.tags(repo, limit=3)


def test_manifest_by_tag_and_digest_and_blob_verified(registry: Registry, tmp_path: Path) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\n" * 10
    repo = _artifact(registry, tmp_path, ["v1"], body)
    client = _client(registry.basic)
    by_tag = client.manifest(repo, "v1")
    assert by_tag.digest == registry.digest(f"{registry.plain.host}/{repo}:v1")
    assert client.manifest(repo, by_tag.digest).data == by_tag.data
    layer = by_tag.json()["layers"][0]
    assert layer["digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    dest = client.blob(repo, layer["digest"], layer["size"], tmp_path / "out" / "layer", 1 << 20)
    assert dest.read_bytes() == body


def test_a_blob_over_the_cap_is_refused_before_it_is_read(registry: Registry, tmp_path: Path) -> None:
    repo = _artifact(registry, tmp_path, ["v1"], b"x" * 5000)
    client = _client(registry.basic)
    layer = client.manifest(repo, "v1").json()["layers"][0]
    registry.basic.clear()
    with pytest.raises(SourceError, match="over the 1000-byte limit; refused before reading"):
        client.blob(repo, layer["digest"], layer["size"], tmp_path / "big", 1000)
    assert not [r for r in registry.basic.requests if "/blobs/" in r.path]
    with pytest.raises(SourceError, match="over the 4000-byte limit; refused before reading"):
        client.blob(repo, layer["digest"], 4000, tmp_path / "lied", 1 << 20)   # size lied about
    assert not (tmp_path / "big").exists() and not (tmp_path / "lied").exists()


def test_a_blob_of_another_digest_is_refused(registry: Registry, tmp_path: Path) -> None:
    repo = _artifact(registry, tmp_path, ["v1"], b"first")
    client = _client(registry.plain, login=None, plain_http=True)
    manifest = client.manifest(repo, "v1").json()
    config = manifest["config"]
    with pytest.raises(SourceError, match="ended after|larger than|has digest"):
        client.blob(repo, config["digest"], config["size"] + 1, tmp_path / "c", 1 << 20)
    with pytest.raises(SourceError, match=r"has no .*@sha256:0+ \(HTTP 404 MANIFEST_UNKNOWN\)"):
        client.manifest(repo, "sha256:" + "0" * 64)


def test_tampered_manifests_and_blobs_are_refused(registry: Registry, tmp_path: Path) -> None:
    repo = _artifact(registry, tmp_path, ["v1"], b"the real content")
    front = registry.basic
    client = _client(front)
    good = client.manifest(repo, "v1")
    layer = good.json()["layers"][0]
    front.tamper(f"/v2/{repo}/")
    try:
        with pytest.raises(SourceError, match=f"not {good.digest} as the registry sent"):
            client.manifest(repo, "v1")
        with pytest.raises(SourceError, match=f"not {good.digest} as asked for"):
            client.manifest(repo, good.digest)
        with pytest.raises(SourceError, match="has digest sha256:.*refusing it"):
            client.blob(repo, layer["digest"], layer["size"], tmp_path / "out" / "l", 1 << 20)
    finally:
        front.clear()
    assert not (tmp_path / "out" / "l").exists()
    assert not list((tmp_path / "out").iterdir())          # no temporary file left behind


def test_token_exchange_on_the_registry_origin(registry: Registry, tmp_path: Path) -> None:
    repo = _artifact(registry, tmp_path, ["1.0.0"])
    registry.token.clear()
    client = _client(registry.token)
    assert client.tags(repo) == ["1.0.0"]
    assert client.manifest(repo, "1.0.0").digest.startswith("sha256:")
    token_calls = [r for r in registry.token.requests if r.path.startswith("/token")]
    assert len(token_calls) == 1 and token_calls[0].authorization.startswith("Basic ")
    assert f"scope=repository%3A{repo.replace('/', '%2F')}%3Apull" in token_calls[0].path
    bearer = [r for r in registry.token.requests if (r.authorization or "").startswith("Bearer ")]
    assert len(bearer) == 2


def test_a_realm_on_another_origin_never_gets_the_account(registry: Registry, tmp_path: Path) -> None:
    repo = _artifact(registry, tmp_path, ["1.0.0"])
    registry.token_elsewhere.clear()
    with pytest.raises(SourceError) as caught:
        _client(registry.token_elsewhere).tags(repo)
    assert "was not sent, because its token service is on another origin" in str(caught.value)
    assert all(r.authorization is None for r in registry.token_elsewhere.requests)
    trusted = _client(registry.token_elsewhere, trusted_realm=registry.token_elsewhere.realm_origin)
    assert trusted.tags(repo) == ["1.0.0"]                 # auth.tokenRealm names that origin
    calls = [r for r in registry.token_elsewhere.requests if r.path.startswith("/token")]
    assert calls[-1].authorization.startswith("Basic ")


def test_wrong_password_is_named_and_never_shown(registry: Registry, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    repo = _artifact(registry, tmp_path, ["1.0.0"])
    caplog.set_level(logging.DEBUG)
    wrong = Login(USER, "hunter2-wrong", LOGIN.names)
    for front in (registry.basic, registry.token):
        with pytest.raises(SourceError) as caught:
            _client(front, wrong).tags(repo)
        message = str(caught.value)
        assert "refused the credentials from auth.usernameEnv REG_USER" in message
        assert "hunter2" not in message and "hunter2" not in caplog.text
        assert "hunter2" not in repr(wrong)


def test_missing_repository_and_tag_are_named(registry: Registry, tmp_path: Path) -> None:
    repo = _artifact(registry, tmp_path, ["1.0.0"])
    client = _client(registry.basic)
    with pytest.raises(SourceError, match=rf"has no the tags of {repo}/nope \(HTTP 404 NAME_UNKNOWN\)"):
        client.tags(f"{repo}/nope")
    with pytest.raises(SourceError, match=rf"has no {repo}:9.9.9 \(HTTP 404 MANIFEST_UNKNOWN\)"):
        client.manifest(repo, "9.9.9")


def test_unreachable_and_busy_registries_are_transient(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(TransientError, match="cannot reach the registry no-such-registry.invalid"):
        RegistryClient("no-such-registry.invalid", who="source oci", timeout=5).tags("a/b")
    with pytest.raises(TransientError, match="cannot reach"):
        RegistryClient("127.0.0.1:9", who="source oci", timeout=5).tags("a/b")
    repo = _artifact(registry, tmp_path, ["1.0.0"])
    for status in (503, 429):
        registry.basic.inject(f"/v2/{repo}/tags/list", status)
        with pytest.raises(TransientError, match=f"HTTP {status}") as caught:
            _client(registry.basic).tags(repo)
        assert caught.value.delay == 1.0


def test_plain_http_only_without_an_account(registry: Registry, tmp_path: Path) -> None:
    repo = _artifact(registry, tmp_path, ["1.0.0"])
    assert _client(registry.plain, login=None, plain_http=True).tags(repo) == ["1.0.0"]
    with pytest.raises(SourceError, match="never sent over plain http"):
        _client(registry.plain, plain_http=True)
    with pytest.raises(SourceError, match="without credentials"):
        _client(registry.basic, login=None).tags(repo)


def test_challenges_and_the_realm_rule() -> None:
    parsed = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                             'scope="repository:library/nginx:pull"')
    assert parsed is not None and parsed.scheme == "bearer"
    assert parsed.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                             "scope": "repository:library/nginx:pull"}
    assert realm_trusted("https://registry-1.docker.io", "https://auth.docker.io/token")
    assert realm_trusted("https://ghcr.io", "https://ghcr.io/token")
    assert not realm_trusted("https://ghcr.io", "https://evil.example/token")
    assert not realm_trusted("https://ghcr.io", "http://ghcr.io/token")
    assert not realm_trusted("https://ghcr.io:443", "https://ghcr.io:8443/token")
    assert realm_trusted("https://registry.corp", "https://gitlab.corp/jwt/auth", "https://gitlab.corp")
    assert not realm_trusted("https://registry.corp", "http://gitlab.corp/jwt/auth", "https://gitlab.corp")
    asked = token_request("https://r.example", parsed, "repository:x:pull", LOGIN)
    assert not isinstance(asked, str) and not asked.send_login
    assert "service=registry.docker.io" in asked.url
    assert isinstance(token_request("https://r.example", parse_challenge(
        'Bearer realm="http://r.example/token"'), "s", None), str)       # type: ignore[arg-type]


def test_manifest_json_is_checked(registry: Registry, tmp_path: Path) -> None:
    repo = _artifact(registry, tmp_path, ["1.0.0"])
    manifest = _client(registry.basic).manifest(repo, "1.0.0")
    assert json.loads(manifest.data)["schemaVersion"] == 2
    assert manifest.media_type == "application/vnd.oci.image.manifest.v1+json"


def test_a_redirect_to_a_storage_host_never_carries_the_account(registry: Registry,
                                                                tmp_path: Path) -> None:
    body = b"kind: Redirected\n"
    repo = _artifact(registry, tmp_path, ["v1"], body)
    storage = RegistryProxy(("127.0.0.1", registry.upstream_port), cert=str(registry.cert),
                            key=str(registry.key))        # another origin, no auth of its own
    try:
        registry.basic.redirect("/blobs/", storage.url)
        client = _client(registry.basic)
        layer = client.manifest(repo, "v1").json()["layers"][0]
        dest = client.blob(repo, layer["digest"], layer["size"], tmp_path / "b", 1 << 20)
        assert dest.read_bytes() == body
        assert [r.authorization for r in storage.requests] == [None]
        plain = RegistryProxy(("127.0.0.1", registry.upstream_port))
        try:
            registry.basic.clear()
            registry.basic.redirect("/blobs/", plain.url)         # https -> http: refused
            with pytest.raises(SourceError, match="redirect from https:// to http:// refused"):
                client.blob(repo, layer["digest"], layer["size"], tmp_path / "c", 1 << 20)
            assert plain.requests == []
        finally:
            plain.close()
    finally:
        registry.basic.clear()
        storage.close()
