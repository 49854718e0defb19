"""A scan of an image policy against the real registry: tags pushed with crane and oras,
read through the TLS + basic auth front; the digest is crane's; errors name the policy,
the repository and the variables, never a password; 2,000 tags stay within bounds."""

from __future__ import annotations

import logging
import time
import urllib.request
from pathlib import Path

import pytest

from shared.errors import SourceError, TransientError
from shared.spec.auth import Auth
from shared.spec.images import ImagePolicy
from tests.support.registry import PASSWORD, USER, Registry, registry, unique_repo  # noqa: F401
from workers.images.scan import scan

ENV = {"REG_USER": USER, "REG_PASSWORD": PASSWORD}
AUTH = Auth(username_env="REG_USER", password_env="REG_PASSWORD")


@pytest.fixture(autouse=True)
def _ca(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(registry.ca_file))


def _push(registry: Registry, tmp_path: Path, tags: list[str]) -> str:
    """Each tag a different one-file artifact (so each has its own digest)."""
    repo = unique_repo("images")
    for tag in tags:
        (tmp_path / "app.yaml").write_text(f"tag: {tag}\n")
        registry.oras("push", f"{registry.plain.host}/{repo}:{tag}", "app.yaml", "--plain-http",
                      cwd=tmp_path)
    return repo


def _policy(host: str, repo: str, value: str = "^1", **kw) -> ImagePolicy:  # type: ignore[no-untyped-def]
    kw.setdefault("auth", AUTH)
    return ImagePolicy("podinfo", f"{host}/{repo}", "semver", value, **kw)


def test_the_highest_in_range_and_its_digest(registry: Registry, tmp_path: Path) -> None:
    repo = _push(registry, tmp_path, ["1.0.0", "1.1.0", "2.0.0-rc.1"])
    before = time.time()
    result = scan(_policy(registry.basic.host, repo), ENV)
    assert result.tag == "1.1.0"
    assert result.digest == registry.crane("digest", "--insecure",
                                           f"{registry.plain.host}/{repo}:1.1.0").strip()
    assert result.why == "1.1.0 by semver ^1 (highest of 2 matching of 3 tags)"
    assert (result.policy, result.repository) == ("podinfo", f"{registry.basic.host}/{repo}")
    assert (result.considered, result.ignored) == (3, 0)
    assert before <= result.at <= time.time()
    token = scan(_policy(registry.token.host, repo, ">=2.0.0-0"), ENV)
    assert token.tag == "2.0.0-rc.1"
    plain = scan(_policy(registry.plain.host, repo, "1.0.x", auth=Auth(), insecure=True), {})
    assert plain.tag == "1.0.0"


def test_no_tag_matches(registry: Registry, tmp_path: Path) -> None:
    repo = _push(registry, tmp_path, ["1.0.0", "1.1.0", "latest"])
    policy = _policy(registry.basic.host, repo, "^3")
    with pytest.raises(SourceError) as caught:
        scan(policy, ENV)
    assert str(caught.value) == (f"image policy podinfo: none of the 3 tags of "
                                 f"{registry.basic.host}/{repo} matches semver ^3")


def test_a_wrong_password_is_named_by_its_variables_never_shown(
        registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    repo = _push(registry, tmp_path, ["1.0.0"])
    caplog.set_level(logging.DEBUG)
    wrong = {"REG_USER": USER, "REG_PASSWORD": "hunter2-Wrong-pw"}
    for front in (registry.basic, registry.token):
        with pytest.raises(SourceError) as caught:
            scan(_policy(front.host, repo), wrong)
        message = str(caught.value)
        assert message.startswith("image policy podinfo: the registry ")
        assert "auth.usernameEnv REG_USER / auth.passwordEnv REG_PASSWORD" in message
        assert "hunter2" not in message and "hunter2" not in repr(caught.value)
    assert "hunter2" not in caplog.text
    with pytest.raises(SourceError, match="environment variable REG_PASSWORD .* not set"):
        scan(_policy(registry.basic.host, repo), {"REG_USER": USER})
    with pytest.raises(SourceError, match="without credentials"):
        scan(_policy(registry.basic.host, repo, auth=Auth()), {})


def test_unknown_repository_and_unreachable_registry(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^image policy podinfo: the registry .* has no the "
                                          r"tags of images/nope \(HTTP 404 NAME_UNKNOWN\)"):
        scan(_policy(registry.basic.host, "images/nope"), ENV)
    with pytest.raises(TransientError, match="^image policy podinfo: cannot reach the registry "
                                             "127.0.0.1:9"):
        scan(_policy("127.0.0.1:9", "apps/podinfo"), ENV, timeout=5)
    repo = _push(registry, tmp_path, ["1.0.0"])
    registry.basic.inject(f"/v2/{repo}/tags/list", 503)
    with pytest.raises(TransientError, match="image policy podinfo: .* HTTP 503"):
        scan(_policy(registry.basic.host, repo), ENV)


def test_two_thousand_tags_are_read_within_bounds(registry: Registry, tmp_path: Path) -> None:
    repo = _push(registry, tmp_path, ["1.0.0"])
    manifest_url = f"http://127.0.0.1:{registry.upstream_port}/v2/{repo}/manifests"
    with urllib.request.urlopen(f"{manifest_url}/1.0.0", timeout=30) as resp:
        body, media_type = resp.read(), resp.headers["Content-Type"]
    for n in range(2000):                   # the same manifest under 2,000 tags
        put = urllib.request.Request(f"{manifest_url}/1.{n}.0", data=body, method="PUT",
                                     headers={"Content-Type": media_type})
        urllib.request.urlopen(put, timeout=30).close()
    registry.basic.clear()
    started = time.monotonic()
    result = scan(_policy(registry.basic.host, repo, "^1"), ENV)
    took = time.monotonic() - started
    assert result.tag == "1.1999.0" and result.considered == 2000
    pages = [r for r in registry.basic.requests if "/tags/list" in r.path and r.authorization]
    assert len(pages) >= 2                   # paged, at most 1,000 tags a page
    assert took < 60, took
