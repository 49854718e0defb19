"""Running the git CLI for the fetch stage: credentials by reference, bounded time, no leaks.

``workers.fetch.gitsource`` decides *what* to run against its mirrors; this module
decides *how*: every call goes through ``run_git``, which gives git a child
environment built by ``git_environment`` (credentials read from the named
environment variables at call time and handed over only through that
environment, never argv, URL or logs; no system or global git configuration;
only the transports ``workers.fetch.gittransport`` allows), a timeout that kills the
whole process group, a guard that kills that group when the worker dies, and
an English locale so that ``fetch_error`` can map git's stderr onto
``SourceError`` (permanent: missing ref, auth refused, no such repository, a
refused ssh host key) or ``TransientError`` (network, 5xx, timeouts: Celery
retries). Every message
keeps git's own reason, trimmed to its last useful lines, as ``(git: ...)``, and
is scrubbed of URL userinfo and of the secret values themselves.

GitPython is not used: its command runner copies the worker's whole environment
(so inherited ``GIT_DIR`` or ``GIT_CONFIG_*`` cannot be dropped, and no explicit
environment can be given), kills on timeout by listing children with
``pgrep``/``ps`` rather than killing a process group, and leaves git running
when the call is interrupted (a Celery soft time limit); its ``Repo`` objects
keep ``git cat-file`` processes alive between calls. One ``subprocess`` call
per git command does what the fetch stage needs.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from shared.errors import FleetsyncError, SourceError, TransientError
from shared.git_urls import scrub_url, transport
from shared.spec.model import Source
from workers.fetch.gittransport import check_transport, protocol_config, ssh_command

DEFAULT_TIMEOUT = 120.0

# Of the worker's GIT_* variables only these reach git: the others would point it at
# another repository, inject configuration or ssh commands, turn TLS checks off
# (GIT_SSL_NO_VERIFY) or trace requests, credentials included, into files.
_KEPT_GIT_ENV = ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH")
_DROPPED_ENV = ("SSH_ASKPASS",)
_USER_VAR = "FLEETSYNC_GIT_USERNAME"
_PASSWORD_VAR = "FLEETSYNC_GIT_PASSWORD"
# A credential helper in shell: it reads the secrets from its own environment.
_HELPER = ('!f() { test "$1" = get || return 0; '
           f'printf "username=%s\\npassword=%s\\n" "${_USER_VAR}" "${_PASSWORD_VAR}"; }}; f')

_AUTH_PATTERNS = ("authentication failed", "returned error: 401", "returned error: 403",
                  "permission denied (", "could not read username", "could not read password",
                  "terminal prompts disabled", "access denied", "invalid username or password")
_BOILERPLATE = ("Please make sure you have the correct access rights", "and the repository exists",
                "fatal: Could not read from remote repository.", "hint:")
_NOT_FOUND_RE = re.compile(r"does not appear to be a git repository|repository .* not found"
                           r"|returned error: 404|no such repository", re.IGNORECASE)


@dataclass(frozen=True)
class GitEnv:
    """The child environment for git and the secret values that must never be shown."""

    env: dict[str, str] = field(repr=False)      # holds the password for git's helper
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)


class GitFailed(Exception):
    """A git command exited non-zero; ``stderr`` is already scrubbed of secrets."""

    def __init__(self, command: str, returncode: int, stderr: str) -> None:
        super().__init__(f"git {command} exited {returncode}: {stderr}")
        self.command = command
        self.returncode = returncode
        self.stderr = stderr


class GitTimeout(GitFailed):
    """A git command ran longer than its timeout and was killed with its children."""


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove URL userinfo and every secret value from ``text``."""
    text = scrub_url(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def check_url(source: Source) -> None:
    """Refuse URLs that would leak into argv or smuggle options: inline passwords, leading '-'."""
    if source.url.startswith("-") or not source.url.strip():
        raise SourceError(f"source {source.name}: invalid URL {scrub_url(source.url)!r}")
    if "://" in source.url and urlsplit(source.url).password is not None:
        raise SourceError(f"source {source.name}: the URL carries a password; reference it "
                          f"with auth.usernameEnv/passwordEnv instead ({scrub_url(source.url)})")


def plain_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` made safe for git: no inherited repository, config or ssh, never a prompt.

    No system or global configuration file is read (``GIT_CONFIG_NOSYSTEM``,
    ``GIT_CONFIG_GLOBAL=/dev/null``): everything git is told comes from here.
    """
    env = {k: v for k, v in environ.items()
           if k not in _DROPPED_ENV and (not k.startswith("GIT_") or k in _KEPT_GIT_ENV)}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", LC_ALL="C", LANGUAGE="C",
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null")
    return env


def local_environment(environ: Mapping[str, str],
                      config: Sequence[tuple[str, str]] = ()) -> GitEnv:
    """For commands that only read a local repository: no credentials, no transport at all.

    ``config`` adds settings of the caller's (the signature checks' ``gpg.*``)."""
    return GitEnv(_with_config(plain_environment(environ),
                               [("protocol.allow", "never"), *config]))


def git_environment(source: Source, environ: Mapping[str, str], *, allow_local: bool = False,
                    learned_hosts: Path | None = None) -> GitEnv:
    """The environment for git calls on behalf of ``source``.

    SourceError when the transport is refused (see ``workers.fetch.gittransport``) or a
    credential is missing. ``allow_local`` is ``FLEETSYNC_ALLOW_LOCAL_SOURCES``;
    ``learned_hosts`` is where ``sshHostKeyPolicy: accept-new`` keeps host keys.
    """
    found = check_transport(source, allow_local=allow_local)
    env = plain_environment(environ)
    config = protocol_config(found, allow_local=allow_local, insecure=source.insecure)
    secrets: tuple[str, ...] = ()
    auth = source.auth
    if found.kind == "ssh":
        env["GIT_SSH_COMMAND"] = ssh_command(source, learned_hosts)
        env["GIT_SSH_VARIANT"] = "ssh"
    if auth.password_env:
        username = _read_var(source, environ, auth.username_env, "usernameEnv") \
            if auth.username_env else "git"
        password = _read_var(source, environ, auth.password_env, "passwordEnv")
        env[_USER_VAR], env[_PASSWORD_VAR] = username, password
        secrets = (password,)
        scope = _credential_scope(source.url)
        if scope:
            config.append((f"credential.{scope}.helper", _HELPER))
    elif auth.username_env:
        raise SourceError(f"source {source.name}: auth.usernameEnv needs auth.passwordEnv too")
    return GitEnv(_with_config(env, config), secrets)


def _with_config(env: dict[str, str], extra: list[tuple[str, str]]) -> dict[str, str]:
    """Pass configuration through GIT_CONFIG_* variables: it never shows in argv."""
    config = [
        ("credential.helper", ""),          # no host-wide helper answers for us
        ("gc.autoDetach", "false"),         # auto gc must not outlive the call
        ("maintenance.autoDetach", "false"),
        ("core.askPass", ""),
        *extra,
    ]
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"] = key, value
    return env


def _read_var(source: Source, environ: Mapping[str, str], name: str, field_name: str) -> str:
    value = environ.get(name)
    if not value:
        raise SourceError(f"source {source.name}: environment variable {name} "
                          f"(auth.{field_name}) is not set")
    return value


def _credential_scope(url: str) -> str | None:
    """``https://host:port`` of an HTTPS URL: credentials answer for that origin only."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return None
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, "", "", ""))


def run_git(args: Sequence[str], genv: GitEnv, *, timeout: float = DEFAULT_TIMEOUT,
            stdin: bytes | None = None) -> str:
    """Run ``git ARGS``; return stdout; raise GitFailed / GitTimeout (messages redacted)."""
    return run_git_said(args, genv, timeout=timeout, stdin=stdin)[0]


def run_git_said(args: Sequence[str], genv: GitEnv, *, timeout: float = DEFAULT_TIMEOUT,
                 stdin: bytes | None = None) -> tuple[str, str]:
    """Like ``run_git``, and also what git said on stderr (redacted) when it succeeded.

    A fetch can exit 0 and still refuse a ref (``warning: rejected refs/heads/main
    because shallow roots are not allowed to be updated``): that is the reason the
    caller gives when the ref is then missing. git runs in its own session so that
    a timeout can kill its helpers (remote-http, ssh, upload-pack) too, and it is
    always waited for. It also dies with the worker (``_dies_with_parent``): a
    worker killed with SIGKILL leaves no git behind, nor any of git's helpers.
    """
    command = next((a for a in args if not a.startswith("-") and "=" not in a), "git")
    arm = _dies_with_parent()
    argv = [*_GUARD, *args] if arm else ["git", *args]
    try:
        proc = subprocess.Popen(argv, env=genv.env, start_new_session=True, preexec_fn=arm,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise GitFailed(command, -1, f"cannot run git: {exc}") from exc
    with proc:
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise GitTimeout(command, -9, f"timed out after {timeout:g}s") from None
        except BaseException:
            _kill_group(proc)
            proc.communicate()
            raise
    stderr = genv.redact(err.decode(errors="replace").strip())
    if proc.returncode != 0:
        raise GitFailed(command, proc.returncode, stderr)
    return out.decode(errors="replace"), stderr


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()          # looked up once: the child after fork only calls it
_PR_SET_PDEATHSIG = 1
# git's helpers (remote-https, ssh) are its children: a signal to git alone would leave
# them waiting on the network. This shell is the session leader; told that the worker
# died (SIGTERM from the kernel), it kills the whole session, git and helpers alike.
# (A background job's stdin would be /dev/null: it is passed on through descriptor 3.)
_GUARD = ("sh", "-c", 'trap "kill -KILL 0" TERM; exec 3<&0; git "$@" <&3 3<&- & wait $!', "git")


def _dies_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel signal git's guard when the worker dies (Linux).

    The signal follows the *thread* that started git; ``run_git`` always waits for
    git in that thread, so it fires only when the worker itself is gone. A worker
    that died between fork and exec is caught by comparing the parent's pid.
    Elsewhere git only gets its own session (killed on timeout), as before.
    """
    if _PRCTL is None:
        return None
    prctl, parent = _PRCTL, os.getpid()

    def arm() -> None:
        if prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(127)
    return arm


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def fetch_error(source: Source, failed: GitFailed) -> FleetsyncError:
    """Map a failed fetch onto the error family that decides whether a retry can help."""
    url = scrub_url(source.url)
    where = f"source {source.name}"
    said = git_said(failed.stderr) or " (git gave no reason)"
    lowered = failed.stderr.lower()
    if isinstance(failed, GitTimeout):
        return TransientError(f"{where}: fetching {url}: git {failed.command} {failed.stderr}")
    if any(p in lowered for p in _AUTH_PATTERNS):
        return SourceError(f"{where}: authentication refused by {url}{said}")
    if "host key verification failed" in lowered or "host identification has changed" in lowered:
        return host_key_error(source, failed.stderr)
    if _NOT_FOUND_RE.search(failed.stderr):
        return SourceError(f"{where}: repository not found at {url}{said}")
    if "couldn't find remote ref" in lowered:
        return missing_ref_error(source, failed.stderr)
    # Connection refused, DNS, resets, 5xx, 429, early EOF: the network may recover.
    return TransientError(f"{where}: fetching {url} failed{said}")


def host_key_error(source: Source, stderr: str) -> SourceError:
    """A refused ssh host key, naming the source, the host and the file it was checked against."""
    found = transport(source.url)
    host = f"{found.host or '?'}{f':{found.port}' if found.port else ''}"
    pinned = f"knownHosts {source.known_hosts}" if source.known_hosts else "the keys learned so far"
    lowered = stderr.lower()
    if "has changed" in lowered or "host identification has changed" in lowered:
        what = (f"the ssh host key of {host} has changed: it does not match {pinned}; if the "
                "server's key was replaced on purpose, put its new key in knownHosts")
    else:
        what = f"the ssh host key of {host} is not in {pinned}"
    said = git_said("\n".join(ln for ln in stderr.splitlines()     # not ssh's advice to delete it
                               if re.search(r"host key (for|is known)|^SHA256:", ln.strip(), re.I)))
    return SourceError(f"source {source.name}: {what}{said}")


def missing_ref_error(source: Source, stderr: str = "") -> SourceError:
    """``source S: branch 'x' not found in URL (git: ...)``; git's part only when it said something."""
    return SourceError(f"source {source.name}: {source.ref_kind} {source.ref!r} not found "
                       f"in {scrub_url(source.url)}{git_said(stderr)}")


def git_said(stderr: str, count: int = 2) -> str:
    """`` (git: LAST USEFUL LINES)`` of already-redacted stderr, or "" when git said nothing useful."""
    lines = [ln.strip() for ln in stderr.splitlines()
             if ln.strip() and not ln.strip().startswith(_BOILERPLATE)]
    return f" (git: {' | '.join(lines[-count:])})" if lines else ""
