"""``defaultBranch: true`` against real repositories: the remote's HEAD, asked at each fetch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.githttp import GitHttpServer
from tests.support.gitutil import GitRepo, git, src
from shared.errors import SourceError
from shared.spec.model import DEFAULT_BRANCH, Auth
from workers.fetch.gitsource import SourceCache


@pytest.fixture()
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "work")
    r.write("apps/web/deploy.yaml", "kind: Deployment\n")
    r.commit("first on main")
    r.branch("other")
    r.commit("first on other")
    r.switch("main")
    r.push()
    return r


@pytest.fixture()
def cache(tmp_path: Path) -> SourceCache:
    return SourceCache(tmp_path / "cache", timeout=20)


def default(url: str, auth: Auth = Auth()):
    return src(url, DEFAULT_BRANCH, "", auth=auth)


def head_of(repo: GitRepo, branch: str) -> str:
    return git("rev-parse", f"refs/heads/{branch}", cwd=repo.path).strip()


def test_follows_the_remotes_default_branch(repo: GitRepo, cache: SourceCache) -> None:
    source = default(repo.bare_url())
    assert cache.fetch(source) == head_of(repo, "main")
    assert cache.resolved_ref(source) == "main (default branch)"


def test_a_local_path_remote_too(repo: GitRepo, cache: SourceCache) -> None:
    source = default(str(repo.bare_path.resolve()))
    assert cache.fetch(source) == head_of(repo, "main")


def test_the_next_fetch_follows_a_new_default_branch(repo: GitRepo, cache: SourceCache) -> None:
    source = default(repo.bare_url())
    assert cache.fetch(source) == head_of(repo, "main")
    git("symbolic-ref", "HEAD", "refs/heads/other", cwd=repo.bare_path)
    assert cache.fetch(source) == head_of(repo, "other")
    assert cache.resolved_ref(source) == "other (default branch)"
    repo.switch("other")
    newer = repo.commit("second on other")
    repo.push()
    assert cache.fetch(source) == newer


def test_a_detached_remote_head_names_the_source(repo: GitRepo, cache: SourceCache) -> None:
    git("update-ref", "--no-deref", "HEAD", head_of(repo, "main"), cwd=repo.bare_path)
    with pytest.raises(SourceError, match=r"^source platform: the HEAD of file://\S+ is "
                                          r"detached \(not a symbolic ref\), so it names no "
                                          r"default branch"):
        cache.fetch(default(repo.bare_url()))


def test_a_missing_remote_head_names_the_source(repo: GitRepo, cache: SourceCache) -> None:
    git("symbolic-ref", "HEAD", "refs/heads/gone", cwd=repo.bare_path)
    with pytest.raises(SourceError, match=r"^source platform: the HEAD of \S+ is missing, so "
                                          r"it names no default branch; set HEAD on the remote"):
        cache.fetch(default(repo.bare_path.resolve().as_uri()))


def test_a_refused_local_transport_is_refused_before_asking(repo: GitRepo,
                                                            tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "strict", timeout=20, allow_local=False)
    with pytest.raises(SourceError, match="FLEETSYNC_ALLOW_LOCAL_SOURCES"):
        cache.fetch(default(repo.bare_url()))


def test_https_with_credentials_from_the_environment(tmp_path: Path) -> None:
    served = GitRepo(tmp_path / "work", bare_path=tmp_path / "served" / "platform.git")
    served.write("README", "hello\n")
    served.commit("first")
    served.push()
    with GitHttpServer(tmp_path / "served", tls=True) as server:
        env = {"PATH": os.environ["PATH"], "GIT_SSL_CAINFO": server.ca_file,
               "GIT_USER": "fleet", "GIT_PW": "s3cret-pw"}
        cache = SourceCache(tmp_path / "cache", timeout=20, environ=env)
        source = default(server.url("platform.git"),
                         Auth(username_env="GIT_USER", password_env="GIT_PW"))
        assert cache.fetch(source) == served.head()
    assert cache.resolved_ref(source) == "main (default branch)"
