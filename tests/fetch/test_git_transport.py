"""Which transports a source may use, against real servers: sshd on loopback, git http-backend.

ssh sources are fetched from Debian's sshd (``tests/support/sshd.py``) with a pinned
host key, a changed one, and ``sshHostKeyPolicy: accept-new``; plain http only
with ``insecure: true`` and never with credentials; remote helpers, ``git://``
and (without FLEETSYNC_ALLOW_LOCAL_SOURCES) local repositories are refused
before git runs; and a worker killed with SIGKILL leaves no git behind.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from shared.errors import SourceError
from shared.spec.model import Auth, Source
from tests.conftest import need
from tests.support.githttp import GitHttpServer
from tests.support.gitutil import GitRepo, src
from tests.support.sshd import SshServer, available, keygen
from workers.fetch import gitcli
from workers.fetch.gitsource import SourceCache

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "work", bare_path=tmp_path / "served" / "platform.git")
    r.write("apps/web/deploy.yaml", "kind: Deployment\n")
    r.commit("first")
    r.push()
    return r


@pytest.fixture()
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    why = available()
    if why:
        need("sshd", why)
    with SshServer(tmp_path / "sshd") as server:
        yield server


def ssh_source(server: SshServer, repo: GitRepo, **changes: object) -> Source:
    source = src(server.url(repo.bare_path), auth=Auth(ssh_key_file=str(server.client_key)))
    return replace(source, **changes)  # type: ignore[arg-type]


def pinned(server: SshServer, tmp_path: Path, line: str | None = None) -> str:
    path = tmp_path / "known_hosts"
    path.write_text(server.known_hosts_line() if line is None else line)
    return str(path)


# -- ssh ------------------------------------------------------------------------------

def test_ssh_fetch_with_the_pinned_host_key(sshd: SshServer, repo: GitRepo, tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache", timeout=30)
    source = ssh_source(sshd, repo, known_hosts=pinned(sshd, tmp_path))
    assert cache.fetch(source) == repo.head()
    repo.write("apps/web/deploy.yaml", "kind: Deployment\nreplicas: 2\n")
    second = repo.commit("second")
    repo.push()
    assert cache.fetch(source) == second
    assert (cache.checkout(source, second) / "apps/web/deploy.yaml").read_text().endswith("2\n")


def test_a_changed_host_key_is_refused_naming_source_and_host(sshd: SshServer, repo: GitRepo,
                                                              tmp_path: Path) -> None:
    impostor = keygen(tmp_path / "other_host_key", "another host")
    kind, key = Path(f"{impostor}.pub").read_text().split()[:2]
    known = pinned(sshd, tmp_path, f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    cache = SourceCache(tmp_path / "cache", timeout=30)
    with pytest.raises(SourceError) as caught:
        cache.fetch(ssh_source(sshd, repo, known_hosts=known))
    message = str(caught.value)
    assert message.startswith(f"source platform: the ssh host key of 127.0.0.1:{sshd.port} "
                              f"has changed: it does not match knownHosts {known}")
    assert "ssh-keygen" not in message and "\n" not in message


def test_a_host_missing_from_known_hosts_is_refused(sshd: SshServer, repo: GitRepo,
                                                    tmp_path: Path) -> None:
    known = pinned(sshd, tmp_path, "")
    with pytest.raises(SourceError, match=rf"source platform: the ssh host key of "
                                          rf"127.0.0.1:{sshd.port} is not in knownHosts "):
        SourceCache(tmp_path / "cache", timeout=30).fetch(ssh_source(sshd, repo, known_hosts=known))


def test_without_known_hosts_an_ssh_source_is_refused_before_connecting(
        sshd: SshServer, repo: GitRepo, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot be checked: set knownHosts"):
        SourceCache(tmp_path / "cache", timeout=30).fetch(ssh_source(sshd, repo))
    assert "Accepted publickey" not in sshd.log.read_text()


def test_accept_new_learns_the_key_once_into_the_cache(sshd: SshServer, repo: GitRepo,
                                                       tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache", timeout=30)
    source = ssh_source(sshd, repo, ssh_host_key_policy="accept-new")
    assert cache.fetch(source) == repo.head()
    learned = list((tmp_path / "cache" / "known_hosts").iterdir())
    assert [p.read_text().split()[1:] for p in learned] == [sshd.known_hosts_line().split()[1:]]
    assert cache.fetch(source) == repo.head()
    # a key learned once is pinned from then on: another key at that address is refused
    impostor = keygen(tmp_path / "other_host_key", "another host")
    kind, key = Path(f"{impostor}.pub").read_text().split()[:2]
    learned[0].write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    with pytest.raises(SourceError, match="has changed"):
        cache.fetch(source)


def test_ssh_reads_no_configuration_but_ours(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("")
    source = replace(src("git@example.com:org/x.git", auth=Auth(ssh_key_file=str(key))),
                     known_hosts=str(key))
    env = gitcli.git_environment(source, {"GIT_SSH": "/bin/evil", "GIT_SSH_COMMAND": "evil"}).env
    assert "GIT_SSH" not in env
    command = env["GIT_SSH_COMMAND"]
    for option in ("-F /dev/null", "BatchMode=yes", "GlobalKnownHostsFile=/dev/null",
                   "StrictHostKeyChecking=yes", f'UserKnownHostsFile="{key}"'):
        assert option in command


# -- http ------------------------------------------------------------------------------

def test_plain_http_with_credentials_is_refused_even_when_insecure(tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache", timeout=10, environ={"U": "fleet", "P": "pw-123"})
    source = src("http://127.0.0.1:9/x.git", auth=Auth(username_env="U", password_env="P"))
    for insecure in (False, True):
        with pytest.raises(SourceError) as caught:
            cache.fetch(replace(source, insecure=insecure))
        assert str(caught.value) == (
            "source platform: credentials are never sent over plain http:// (even with "
            "insecure: true); use https:// for http://127.0.0.1:9/x.git")
        assert "pw-123" not in str(caught.value)


def test_plain_http_needs_insecure_and_then_works(repo: GitRepo, tmp_path: Path) -> None:
    cache = SourceCache(tmp_path / "cache", timeout=20, environ={"PATH": os.environ["PATH"]})
    with GitHttpServer(tmp_path / "served", username=None) as server:
        source = src(server.url("platform.git"))
        with pytest.raises(SourceError, match="plain http:// is refused .* set insecure: true"):
            cache.fetch(source)
        assert server.requests == []
        assert cache.fetch(replace(source, insecure=True)) == repo.head()
    assert all("Authorization" not in str(r) for r in server.requests)


def test_an_https_source_cannot_be_redirected_to_another_transport(repo: GitRepo,
                                                                   tmp_path: Path) -> None:
    """git itself refuses what the source did not ask for (protocol.allow=never)."""
    genv = gitcli.git_environment(src("https://git.example.com/x.git"), {"PATH": os.environ["PATH"]})
    with pytest.raises(gitcli.GitFailed, match="transport 'file' not allowed"):
        gitcli.run_git(["ls-remote", repo.bare_url()], genv, timeout=20)


# -- refused before git runs --------------------------------------------------------------

@pytest.mark.parametrize("url, says", [
    ("fd::17", "the fd:: transport is refused: it would make git talk to a file descriptor"),
    ("ext::sh -c touch% {marker}", "the ext:: transport is refused: it would make git run"),
    ("git://127.0.0.1/x.git", "the git:// transport is refused"),
    ("foo::https://h/x.git", "the foo:: transport is refused"),
])
def test_dangerous_transports_are_refused_at_once(tmp_path: Path, url: str, says: str) -> None:
    marker = tmp_path / "ran"
    cache = SourceCache(tmp_path / "cache", timeout=120)
    started = time.monotonic()
    with pytest.raises(SourceError, match=f"^source platform: {says}"):
        cache.fetch(src(url.format(marker=marker)))
    assert time.monotonic() - started < 2 and not marker.exists()


@pytest.mark.parametrize("local", ["file", "path"])
def test_local_sources_need_the_setting(repo: GitRepo, tmp_path: Path, local: str) -> None:
    url = repo.bare_url() if local == "file" else str(repo.bare_path)
    refused = SourceCache(tmp_path / "refused", allow_local=False)
    with pytest.raises(SourceError) as caught:
        refused.fetch(src(url))
    assert str(caught.value) == (
        f"source platform: local source {url} is refused: local paths and file:// URLs are "
        "read only when FLEETSYNC_ALLOW_LOCAL_SOURCES=true is set on the workers")
    assert SourceCache(tmp_path / "allowed", allow_local=True).fetch(src(url)) == repo.head()


def test_the_setting_is_read_from_the_environment(tmp_path: Path) -> None:
    assert SourceCache(tmp_path, environ={"FLEETSYNC_ALLOW_LOCAL_SOURCES": "true"}).allow_local
    assert not SourceCache(tmp_path, environ={}).allow_local


# -- git dies with its worker ---------------------------------------------------------------

_WORKER = """
import sys
from dataclasses import replace
from tests.support.gitutil import src
from workers.fetch.gitsource import SourceCache
SourceCache(sys.argv[1], timeout=600).fetch(replace(src(sys.argv[2]), insecure=True))
"""


def _processes() -> dict[int, tuple[int, int, str, str]]:
    """pid -> (ppid, session, state, command) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (int(fields[1]), int(fields[3]), fields[0], argv)
    return found


def _wait_for(condition, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    pause = 0.02
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_git_and_its_helpers_die_with_a_killed_worker(tmp_path: Path) -> None:
    with socket.socket() as silent:          # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/x.git"
        worker = subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path / "cache"), url],
                                  cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            def helpers() -> list[int]:
                procs = _processes()
                ours = [pid for pid, (ppid, _, _, argv) in procs.items()
                        if ppid == worker.pid and "git" in argv]
                sessions = {procs[pid][1] for pid in ours}
                group = [pid for pid, (_, sid, _, argv) in procs.items()
                         if sid in sessions and "remote-http" in argv]
                return ours + group if group else []
            git_pids = _wait_for(helpers, 30, "git fetching from the silent server")
        finally:
            worker.kill()
            worker.wait()

        def gone() -> bool:
            procs = _processes()
            return all(pid not in procs or procs[pid][2] in "ZX" for pid in git_pids)
        _wait_for(gone, 10, f"git processes {git_pids} to die with their worker")
