"""Fetch errors keep git's own reason, trimmed, never with credentials: real repositories on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.githttp import GitHttpServer
from tests.support.gitutil import GitRepo, git, src
from shared.errors import SourceError, TransientError
from shared.spec.model import Auth
from workers.fetch.gitcli import git_said
from workers.fetch.gitsource import SourceCache


@pytest.fixture()
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "work")
    for i in range(3):
        r.write("apps/web/deploy.yaml", f"kind: Deployment\nreplicas: {i}\n")
        r.commit(f"change {i}")
    return r


@pytest.fixture()
def cache(tmp_path: Path) -> SourceCache:
    return SourceCache(tmp_path / "cache", timeout=20)



def shallow_copy(repo: GitRepo, tmp_path: Path) -> str:
    """A bare clone of depth 1 (what a CI cache or a mirror made with --depth looks like)."""
    shallow = tmp_path / "shallow.git"
    git("clone", "-q", "--bare", "--depth", "1", repo.bare_url(), str(shallow))
    assert (shallow / "shallow").is_file()
    return shallow.resolve().as_uri()


def test_missing_branch_names_gits_reason(repo: GitRepo, cache: SourceCache) -> None:
    url = repo.bare_url()
    with pytest.raises(SourceError) as caught:
        cache.fetch(src(url, "branch", "master"))
    assert str(caught.value) == (f"source platform: branch 'master' not found in {url} "
                                 "(git: fatal: couldn't find remote ref refs/heads/master)")


def test_missing_tag_names_gits_reason(repo: GitRepo, cache: SourceCache) -> None:
    with pytest.raises(SourceError, match=r"tag 'v9' not found in .* \(git: fatal: couldn't "
                                          r"find remote ref refs/tags/v9\)$"):
        cache.fetch(src(repo.bare_url(), "tag", "v9"))


def test_shallow_source_says_why_the_branch_is_missing(repo: GitRepo, cache: SourceCache,
                                                       tmp_path: Path) -> None:
    """git exits 0 but rejects the ref; its warning is the reason, not a bare 'not found'."""
    url = shallow_copy(repo, tmp_path)
    with pytest.raises(SourceError) as caught:
        cache.fetch(src(url, "branch", "main"))
    message = str(caught.value)
    assert message.startswith(f"source platform: branch 'main' not found in {url} (git: ")
    assert "shallow" in message and message.endswith(")")


def test_shallow_source_with_a_missing_branch_names_the_missing_ref(
        repo: GitRepo, cache: SourceCache, tmp_path: Path) -> None:
    url = shallow_copy(repo, tmp_path)
    with pytest.raises(SourceError, match=r"branch 'master' not found in .* \(git: fatal: "
                                          r"couldn't find remote ref refs/heads/master\)$"):
        cache.fetch(src(url, "branch", "master"))


def test_missing_repository_keeps_the_useful_line_only(tmp_path: Path, cache: SourceCache) -> None:
    absent = tmp_path / "absent.git"
    with pytest.raises(SourceError) as caught:
        cache.fetch(src(absent.as_uri()))
    assert str(caught.value) == (f"source platform: repository not found at {absent.as_uri()} "
                                 f"(git: fatal: '{absent}' does not appear to be a git repository)")


def test_a_ref_that_is_simply_absent_has_no_invented_reason(repo: GitRepo,
                                                            cache: SourceCache) -> None:
    """A commit missing from a normal fetch: git said nothing, so nothing is quoted."""
    with pytest.raises(SourceError) as caught:
        cache.fetch(src(repo.bare_url(), "commit", "deadbeef" * 5))
    assert str(caught.value).endswith("not found in " + repo.bare_url())


def test_credentials_never_appear_in_git_reasons(repo: GitRepo, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    git("clone", "-q", "--bare", repo.bare_url(), str(served / "platform.git"))
    auth = Auth(username_env="GIT_USER", password_env="GIT_PW")
    with GitHttpServer(served, tls=True) as server:
        env = {"GIT_USER": "fleet", "GIT_PW": "wrong-horse-battery", "PATH": os.environ["PATH"],
               "GIT_SSL_CAINFO": server.ca_file}
        cache = SourceCache(tmp_path / "cache", timeout=20, environ=env)
        url = server.url("platform.git").replace("https://", "https://fleet@")
        with pytest.raises(SourceError, match=r"authentication refused by .* \(git: ") as caught:
            cache.fetch(src(url, "branch", "nope", auth=auth))
    text = f"{caught.value} {caught.value!r} {caught.value.__cause__}"
    assert "wrong-horse-battery" not in text and "fleet@" not in text
    assert "\n" not in str(caught.value)


def test_transient_errors_quote_git_too(repo: GitRepo, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    git("clone", "-q", "--bare", repo.bare_url(), str(served / "platform.git"))
    with GitHttpServer(served, fail_status=503, tls=True) as server:
        cache = SourceCache(tmp_path / "cache", timeout=20,
                            environ={"PATH": os.environ["PATH"], "GIT_SSL_CAINFO": server.ca_file})
        with pytest.raises(TransientError, match=r"fetching .* failed \(git: .*503"):
            cache.fetch(src(server.url("platform.git")))


def test_git_said_keeps_two_useful_lines() -> None:
    stderr = ("remote: Enumerating objects\nerror: first\nerror: second\n"
              "fatal: Could not read from remote repository.\n\n"
              "Please make sure you have the correct access rights\nand the repository exists.\n"
              "hint: try again\n")
    assert git_said(stderr) == " (git: error: first | error: second)"
    assert git_said("") == "" and git_said("\n\nhint: nothing\n") == ""
