"""The fetch stage's Git sources against real repositories: file:// and smart HTTPS on loopback."""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.githttp import GitHttpServer
from tests.support.gitutil import GitRepo, src
from shared.errors import SourceError, TransientError
from shared.spec.model import Auth, Source
from workers.fetch import gitcli
from workers.fetch.gitsource import SourceCache


def children() -> list[str]:
    """Processes (zombies included) whose parent is this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                found.append(f"{entry.name} {fields[0]}")
    return found


@pytest.fixture(autouse=True)
def no_leaked_processes():
    """No child process outlives a test (the session's services were there before it)."""
    before = {line.split()[0] for line in children()}
    yield
    assert new_children(before) == [], "git (or other) child processes outlived the test"


def new_children(before: set[str]) -> list[str]:
    return [line for line in children() if line.split()[0] not in before]


@pytest.fixture()
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "work")
    r.write("apps/web/deploy.yaml", "kind: Deployment\n")
    r.commit("first")
    return r


@pytest.fixture()
def cache(tmp_path: Path) -> SourceCache:
    return SourceCache(tmp_path / "cache", timeout=20)



def test_branch_resolves_and_new_commits_are_picked_up(repo: GitRepo, cache: SourceCache) -> None:
    url = repo.bare_url()
    assert cache.fetch(src(url)) == repo.head()
    repo.write("apps/web/deploy.yaml", "kind: Deployment\nreplicas: 2\n")
    second = repo.commit("second")
    repo.push()
    assert cache.fetch(src(url)) == second
    assert cache.mirror_path(src(url)).parent == cache.root / "mirrors"


def test_other_branch(repo: GitRepo, cache: SourceCache) -> None:
    repo.branch("release")
    release = repo.commit("on release")
    repo.switch("main")
    url = repo.bare_url()
    assert cache.fetch(src(url, "branch", "release")) == release
    assert cache.fetch(src(url, "branch", "main")) != release


def test_tags_annotated_and_lightweight_resolve_to_commits(repo: GitRepo,
                                                           cache: SourceCache) -> None:
    first = repo.head()
    repo.tag("light")
    repo.tag("v1.0.0", message="annotated")
    repo.commit("later")
    url = repo.bare_url()
    assert cache.fetch(src(url, "tag", "light")) == first
    assert cache.fetch(src(url, "tag", "v1.0.0")) == first   # peeled, not the tag object
    repo.tag("light")                                       # a moved tag is followed
    repo.push()
    assert cache.fetch(src(url, "tag", "light")) == repo.head()


def test_semver_picks_the_highest_matching_tag(repo: GitRepo, cache: SourceCache) -> None:
    shas = {}
    for version in ("v1.0.0", "v1.2.0", "v1.10.1", "v2.0.0", "v1.11.0-rc.1"):
        shas[version] = repo.commit(f"release {version}")
        repo.tag(version, message=version)
    url = repo.bare_url()
    assert cache.fetch(src(url, "semver", "^1.0")) == shas["v1.10.1"]
    assert cache.fetch(src(url, "semver", ">=2")) == shas["v2.0.0"]
    with pytest.raises(SourceError, match=r"no tag matches semver range '\^3\.0'"):
        cache.fetch(src(url, "semver", "^3.0"))


def test_commit_full_and_short_sha(repo: GitRepo, cache: SourceCache) -> None:
    first = repo.head()
    repo.commit("second")
    url = repo.bare_url()
    assert cache.fetch(src(url, "commit", first)) == first
    assert cache.fetch(src(url, "commit", first[:8])) == first
    assert cache.fetch(src(url, "commit", first[:10].upper())) == first


@pytest.mark.parametrize("kind, ref, message", [
    ("branch", "nope", r"branch 'nope' not found"),
    ("tag", "v9.9.9", r"tag 'v9.9.9' not found"),
    ("commit", "deadbeef" * 5, r"commit '(deadbeef){5}' not found"),
    ("commit", "xyz", r"not a hexadecimal SHA"),
    ("branch", "-evil", r"invalid branch name"),
])
def test_missing_refs_are_source_errors(repo: GitRepo, cache: SourceCache, kind: str, ref: str,
                                        message: str) -> None:
    with pytest.raises(SourceError, match=rf"source platform: .*{message}"):
        cache.fetch(src(repo.bare_url(), kind, ref))


def test_missing_repository_is_a_source_error(tmp_path: Path, cache: SourceCache) -> None:
    with pytest.raises(SourceError, match="repository not found"):
        cache.fetch(src((tmp_path / "absent.git").as_uri()))


def test_checkout_is_read_only_cached_and_keeps_symlinks(repo: GitRepo, cache: SourceCache,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    repo.write("apps/web/service.yaml", "kind: Service\n")
    repo.symlink("apps/web/alias.yaml", "service.yaml")
    repo.symlink("apps/escape.yaml", "../../../etc/passwd")
    repo.remove("apps/web/deploy.yaml")
    source = src(repo.bare_url())
    sha = cache.fetch(source)                              # still the first commit
    tree = cache.checkout(source, sha)
    assert tree == cache.root / "trees" / sha
    assert (tree / "apps/web/deploy.yaml").read_text() == "kind: Deployment\n"
    assert not (tree / "apps/web/service.yaml").exists()
    assert not stat.S_IMODE((tree / "apps/web/deploy.yaml").stat().st_mode) & 0o222
    assert not stat.S_IMODE((tree / "apps").stat().st_mode) & 0o222

    second = repo.commit("symlinks")
    repo.push()
    assert cache.fetch(source) == second
    tree2 = cache.checkout(source, second)
    assert os.readlink(tree2 / "apps/web/alias.yaml") == "service.yaml"
    assert os.readlink(tree2 / "apps/escape.yaml") == "../../../etc/passwd"
    assert not (tree2 / "apps/web/deploy.yaml").exists()
    assert [p.name for p in (cache.root / "trees").iterdir()] != []
    assert not [p for p in (cache.root / "trees").iterdir() if p.name.startswith(".")]

    calls = []
    monkeypatch.setattr("workers.fetch.gitsource.run_git", lambda *a, **k: calls.append(a))
    assert cache.checkout(source, second) == tree2      # cached: no git at all
    assert calls == []


def test_checkout_of_unknown_revision(repo: GitRepo, cache: SourceCache) -> None:
    source = src(repo.bare_url())
    cache.fetch(source)
    with pytest.raises(SourceError, match="is not in the mirror"):
        cache.checkout(source, "0" * 40)
    with pytest.raises(SourceError, match="not a full commit SHA"):
        cache.checkout(source, "main")


def test_revision_info(repo: GitRepo, cache: SourceCache) -> None:
    repo.write("x", "1")
    repo.commit("Add x\n\nWith a body.")
    source = src(repo.bare_url())
    info = cache.revision_info(source, cache.fetch(source))
    assert info["author"] == "Test Author"
    assert info["message"] == "Add x"
    assert info["committed_at"].endswith("+00:00")
    assert info["revision"] == repo.head()


def _fetch_in_child(args: tuple[str, str]) -> tuple[str, str]:
    root, url = args
    cache = SourceCache(root, timeout=20)
    sha = cache.fetch(src(url))
    tree = cache.checkout(src(url), sha)
    return sha, (tree / "apps/web/deploy.yaml").read_text()


def test_concurrent_fetches_from_threads_and_processes(repo: GitRepo, tmp_path: Path) -> None:
    for i in range(20):
        repo.write(f"apps/many/{i}.yaml", f"n: {i}\n")
    head = repo.commit("many files")
    url, root = repo.bare_url(), str(tmp_path / "shared-cache")
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(_fetch_in_child((root, url)))
        except Exception as exc:  # collected and asserted below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pending = pool.map_async(_fetch_in_child, [(root, url)] * 4)
        for t in threads:
            t.start()
        from_processes = pending.get(60)
        for t in threads:
            t.join(60)
        pool.close()
        pool.join()
    assert results + from_processes == [(head, "kind: Deployment\n")] * 8
    trees = list((tmp_path / "shared-cache" / "trees").iterdir())
    assert [t.name for t in trees] == [head]


# -- credentials and the network ---------------------------------------------

@pytest.fixture()
def http_repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "work", bare_path=tmp_path / "served" / "platform.git")
    r.write("README", "hello\n")
    r.commit("first")
    r.push()
    return r


def http_source(url: str, password_env: str = "GIT_PW") -> Source:
    return src(url, auth=Auth(username_env="GIT_USER", password_env=password_env))


def tls_env(server: GitHttpServer, **extra: str) -> dict[str, str]:
    """A worker environment that trusts the server's self-signed certificate."""
    return {"PATH": os.environ["PATH"], "GIT_SSL_CAINFO": server.ca_file, **extra}


def test_http_basic_auth_from_environment(http_repo: GitRepo, tmp_path: Path) -> None:
    with GitHttpServer(tmp_path / "served", tls=True) as server:
        env = tls_env(server, GIT_USER="fleet", GIT_PW="s3cret-pw")
        cache = SourceCache(tmp_path / "cache", timeout=20, environ=env)
        assert cache.fetch(http_source(server.url("platform.git"))) == http_repo.head()
    statuses = [status for _, _, status in server.requests]
    assert statuses[0] == 401 and 200 in statuses      # challenged, then answered by env creds
    assert not any("s3cret" in path for _, path, _ in server.requests)


def test_http_wrong_password_is_refused_quickly(http_repo: GitRepo, tmp_path: Path) -> None:
    with GitHttpServer(tmp_path / "served", tls=True) as server:
        env = tls_env(server, GIT_USER="fleet", GIT_PW="wrong-horse-battery")
        cache = SourceCache(tmp_path / "cache", timeout=20, environ=env)
        started = time.monotonic()
        with pytest.raises(SourceError, match="authentication refused") as caught:
            cache.fetch(http_source(server.url("platform.git")))
    assert time.monotonic() - started < 10
    text = f"{caught.value} {caught.value!r} {caught.value.__cause__}"
    assert "wrong-horse-battery" not in text


def test_http_without_credentials_is_refused(http_repo: GitRepo, tmp_path: Path) -> None:
    with GitHttpServer(tmp_path / "served", tls=True) as server:
        cache = SourceCache(tmp_path / "cache", timeout=20, environ=tls_env(server))
        with pytest.raises(SourceError, match="authentication refused"):
            cache.fetch(src(server.url("platform.git")))


def test_missing_password_variable_is_named(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache", environ={"GIT_USER": "fleet"})
    with pytest.raises(SourceError, match=r"environment variable GIT_PW \(auth.passwordEnv\)"):
        cache.fetch(http_source("https://127.0.0.1:9/x.git"))


def test_server_errors_and_refused_connections_are_transient(http_repo: GitRepo,
                                                             tmp_path: Path) -> None:
    with GitHttpServer(tmp_path / "served", fail_status=503, tls=True) as server:
        env = tls_env(server, GIT_USER="fleet", GIT_PW="s3cret-pw")
        cache = SourceCache(tmp_path / "cache", timeout=20, environ=env)
        with pytest.raises(TransientError, match="503"):
            cache.fetch(http_source(server.url("platform.git")))
    closed = server.url("platform.git")                     # nobody listens there any more
    with pytest.raises(TransientError, match="(?i)connect"):
        cache.fetch(http_source(closed))


def test_a_hanging_server_times_out_without_leaking(http_repo: GitRepo, tmp_path: Path) -> None:
    before = {line.split()[0] for line in children()}
    with GitHttpServer(tmp_path / "served", hang=True, tls=True) as server:
        cache = SourceCache(tmp_path / "cache", timeout=1, environ=tls_env(server))
        started = time.monotonic()
        with pytest.raises(TransientError, match="timed out after 1s"):
            cache.fetch(src(server.url("platform.git")))
        assert time.monotonic() - started < 5
        assert new_children(before) == []


def test_inline_password_in_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="carries a password") as caught:
        SourceCache(tmp_path).fetch(src("https://bob:hunter2@git.example.com/x.git"))
    assert "hunter2" not in str(caught.value)


def test_git_environment_holds_credentials_only_by_reference(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key\n")
    source = src("https://git.example.com/org/x.git",
                 auth=Auth(ssh_key_file=str(key), username_env="U", password_env="P"))
    genv = gitcli.git_environment(source, {"U": "bob", "P": "hunter2", "GIT_DIR": "/elsewhere",
                                           "GIT_SSL_NO_VERIFY": "1", "GIT_SSH_COMMAND": "evil"})
    assert "GIT_SSH_COMMAND" not in genv.env         # an https source runs no ssh at all
    assert genv.env["GIT_TERMINAL_PROMPT"] == "0" and "GIT_DIR" not in genv.env
    assert "GIT_SSL_NO_VERIFY" not in genv.env
    assert genv.env["GIT_CONFIG_NOSYSTEM"] == "1" and genv.env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    config = [v for k, v in genv.env.items() if k.startswith("GIT_CONFIG_")]
    assert not any("hunter2" in v for v in config)
    assert "credential.https://git.example.com.helper" in genv.env.values()
    assert genv.redact("https://bob:hunter2@h/x failed hunter2") == "https://h/x failed ***"
    known = tmp_path / "known_hosts"
    known.write_text("")
    ssh = replace(src("ssh://git@h/x", auth=Auth(ssh_key_file=str(key))), known_hosts=str(known))
    command = gitcli.git_environment(ssh, {}).env["GIT_SSH_COMMAND"]
    assert f"-i {key} -o IdentitiesOnly=yes" in command and "-F /dev/null" in command
    assert "StrictHostKeyChecking=yes" in command and f'UserKnownHostsFile="{known}"' in command
    with pytest.raises(SourceError, match="ssh key file .* is not readable"):
        gitcli.git_environment(replace(ssh, auth=Auth(ssh_key_file="/nonexistent")), {})


def test_old_checkouts_are_collected_but_recent_ones_are_kept(repo: GitRepo, tmp_path: Path) -> None:
    from workers.fetch.gitdisk import collect_trees

    cache = SourceCache(tmp_path / "cache", timeout=20, trees_kept=3)
    source = src(repo.bare_url())
    shas = []
    for i in range(6):
        repo.write("apps/web/deploy.yaml", f"kind: Deployment\n# {i}\n")
        shas.append(repo.commit(f"change {i}"))
        repo.push()
        assert cache.fetch(source) == shas[-1]
        cache.checkout(source, shas[-1])
    trees = tmp_path / "cache" / "trees"
    assert len(list(trees.iterdir())) == 6          # all used within the last half hour
    for i, sha in enumerate(shas):                  # older use first
        os.utime(trees / sha, (time.time() - 100 + i, time.time() - 100 + i))
    removed = collect_trees(trees, 3, in_use=0)
    assert [p.name for p in removed] == shas[:3]
    assert sorted(p.name for p in trees.iterdir()) == sorted(shas[3:])
    again = cache.checkout(source, shas[0])         # made again when asked for
    assert (again / "apps/web/deploy.yaml").read_text() == "kind: Deployment\n# 0\n"


def test_a_mirror_past_its_max_size_fails_the_fetch_by_name(repo: GitRepo, tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache", timeout=20)
    source = replace(src(repo.bare_url()), max_size=10 * 1024 * 1024)
    assert cache.fetch(source) == repo.head()
    repo.write("big.bin", os.urandom(256 * 1024).hex())    # 512 KiB, about half of it after zlib
    repo.commit("a big file")
    repo.push()
    with pytest.raises(SourceError, match=r"source .*: its mirror takes .* MiB on this host, "
                                          r"more than maxSize 0.1 MiB"):
        cache.fetch(replace(source, max_size=100 * 1024))


def test_concurrent_checkouts_of_a_tree_extract_it_once(repo: GitRepo, cache: SourceCache,
                                                        monkeypatch) -> None:
    """A cold start: every worker process renders at the same revision at once; one of
    them checks the tree out and the others wait for it, none extracts it again."""
    import threading

    source = src(repo.bare_url())
    sha = cache.fetch(source)
    extracted = []
    original = SourceCache._extract
    monkeypatch.setattr(SourceCache, "_extract",
                        lambda self, *a: extracted.append(1) or original(self, *a))
    trees: list[Path] = []
    threads = [threading.Thread(target=lambda: trees.append(cache.checkout(source, sha)))
               for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(trees) == 6 and len(set(trees)) == 1 and extracted == [1]
