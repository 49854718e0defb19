"""One commit per scan per repository: the setters' changes committed and pushed, never forced.

``update_repository`` works in a checkout of its own (``workdir``; never the fetch
stage's mirrors) and reads top to bottom as the pipeline:

1. fetch the source's branch and the push branch (``imageUpdates.push.branch``,
   default the source's branch) with the source's *read* credential, under the
   transport rules of ``workers.fetch.gittransport`` (no system or global git
   configuration, the protocol allow-list, ``knownHosts``, credentials only
   through git's environment: ``workers.fetch.gitcli``);
2. check out the push branch's remote head, or the source branch's when the push
   branch does not exist yet (it is then created by the push);
3. run the setters (``workers.images.setters``) below ``imageUpdates.path``;
   any problem, or no change: nothing is committed or pushed;
4. make ONE commit of the changed files: author and committer from
   ``imageUpdates``, the message from its template, signed when ``signingKey``
   is set (ssh: ``gpg.format=ssh``; gpg: the key imported into a ``GNUPGHOME``
   made for this commit), no hooks run;
5. ``git push origin HEAD:refs/heads/BRANCH`` with the *write* credential
   (``writeAuth``; the read one when it is not set). A rejection because the
   branch moved (non-fast-forward, "fetch first"): fetch again, start from the new
   head and run the setters on that tree (markers may have moved, a textual
   rebase could set a stale line), commit, push; at most ``MAX_ATTEMPTS`` pushes,
   then a ``SourceError`` naming the branch. A refused push (401/403, permission
   denied: a read-only credential) is a ``SourceError`` naming the source and the
   credential's variable names or key file, never a value.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from shared.errors import SourceError, TransientError
from shared.git_urls import scrub_url
from shared.refnames import ref_name_problem
from shared.settings import from_env
from shared.spec.images import DEFAULT_MESSAGE, ImagePolicy, ImageUpdates, Signing
from shared.spec.model import Auth, Source
from workers.fetch.gitcli import (GitEnv, GitFailed, GitTimeout, check_url, fetch_error,
                                  git_environment, git_said, local_environment, run_git,
                                  run_git_said)
from workers.images.setters import Change, SetResult, set_images

MAX_ATTEMPTS = 3
_MOVED = ("non-fast-forward", "fetch first", "[rejected]", "stale info")
_REFUSED = ("returned error: 401", "returned error: 403", "permission denied", "access denied",
            "authentication failed", "not allowed", "hook declined", "[remote rejected]",
            "could not read username", "insufficient permission", "read-only", "read only")


@dataclass(frozen=True)
class PushResult:
    commit: str | None          # the commit pushed; None: nothing to commit (or problems)
    branch: str
    changes: tuple[Change, ...]
    problems: tuple[str, ...]
    message: str
    attempts: int               # pushes tried
    skipped: tuple[str, ...] = ()   # files the setters did not read (symlinks, too large)


@dataclass(frozen=True)
class _Checkout:
    """The working repository of one source and the two git environments it uses."""

    source: Source
    updates: ImageUpdates
    path: Path
    environ: Mapping[str, str]
    read: GitEnv
    write: GitEnv

    @property
    def branch(self) -> str:
        return self.updates.push_branch or self.source.ref

    def git(self, *args: str, genv: GitEnv | None = None, stdin: bytes | None = None) -> str:
        """A local git command; its failure is a SourceError naming the source."""
        try:
            return run_git(["-C", str(self.path), *args], genv or self.local(), stdin=stdin)
        except GitFailed as failed:
            raise SourceError(f"source {self.source.name}: image updates: git {failed.command} "
                              f"failed in the working copy{git_said(failed.stderr)}") from failed

    def local(self) -> GitEnv:
        return local_environment(self.environ, [("core.hooksPath", "/dev/null")])


def update_repository(source: Source, policies: Sequence[ImagePolicy], chosen: Mapping[str, str],
                      environ: Mapping[str, str], workdir: Path) -> PushResult:
    """Set the markers of ``source`` to ``chosen`` (policy name -> tag), commit once, push."""
    repo = _open(source, environ, Path(workdir))
    attempts = 0
    while True:
        _start_from_remote(repo)
        result = set_images(repo.path, policies, chosen, repo.updates.path)
        if result.problems or not result.changes:
            return PushResult(commit=None, branch=repo.branch, changes=result.changes,
                              problems=result.problems, message="", attempts=attempts,
                              skipped=result.skipped)
        message = commit_message(repo.updates, source.name, result.changes)
        sha = _commit(repo, result, message)
        attempts += 1
        if _push(repo):
            return PushResult(commit=sha, branch=repo.branch, changes=result.changes,
                              problems=(), message=message, attempts=attempts,
                              skipped=result.skipped)
        if attempts >= MAX_ATTEMPTS:
            raise SourceError(f"source {source.name}: branch {repo.branch!r} kept moving: "
                              f"{attempts} pushes rejected as not fast-forward; nothing pushed")


def commit_message(updates: ImageUpdates, source: str, changes: Sequence[Change]) -> str:
    """The template with ``{changes}`` (one ``- FILE: OLD -> NEW (policy NAME)`` a line),
    ``{count}`` and ``{source}``; plain replacement, never ``str.format``."""
    lines = "\n".join(f"- {c.file}: {c.old} -> {c.new} (policy {c.policy})" for c in changes)
    template = updates.message_template or DEFAULT_MESSAGE
    text = (template.replace("{changes}", lines).replace("{count}", str(len(changes)))
            .replace("{source}", source))
    return text.rstrip("\n") + "\n"


def _open(source: Source, environ: Mapping[str, str], workdir: Path) -> _Checkout:
    """Check the source, build both environments, and make the working repository."""
    updates = source.image_updates
    if updates is None:
        raise SourceError(f"source {source.name}: has no imageUpdates")
    if source.ref_kind != "branch" or not source.ref:
        raise SourceError(f"source {source.name}: imageUpdates needs a source that follows "
                          f"a named branch (it follows {source.ref_kind} {source.ref!r})")
    branch = updates.push_branch or source.ref
    problem = ref_name_problem("branch", branch)
    if problem:
        raise SourceError(f"source {source.name}: imageUpdates.push.branch: {problem}")
    check_url(source)
    allow_local = from_env(environ).allow_local_sources
    learned = workdir / "known_hosts"
    read = git_environment(source, environ, allow_local=allow_local, learned_hosts=learned)
    writer = dataclasses.replace(source, auth=updates.write_auth) \
        if updates.write_auth != Auth() else source
    write = git_environment(writer, environ, allow_local=allow_local, learned_hosts=learned)
    repo = _Checkout(source=source, updates=updates, path=workdir / "repo", environ=environ,
                     read=read, write=write)
    if not (repo.path / ".git").is_dir():
        repo.path.mkdir(parents=True, exist_ok=True)
        repo.git("init", "-q")
    # The checkout is ours alone (scans of one repository are locked): a lock file left
    # by a worker killed mid-commit is stale, and would fail every later scan.
    (repo.path / ".git" / "index.lock").unlink(missing_ok=True)
    repo.git("config", "remote.origin.url", source.url)
    return repo


def _start_from_remote(repo: _Checkout) -> None:
    """Fetch the source and push branches; check out the push branch's head (or the source's)."""
    heads = _remote_heads(repo)
    source_branch, push_branch = repo.source.ref, repo.branch
    if source_branch not in heads:
        raise SourceError(f"source {repo.source.name}: branch {source_branch!r} not found in "
                          f"{scrub_url(repo.source.url)}")
    wanted = sorted({source_branch, push_branch} & heads.keys())
    refspecs = [f"+refs/heads/{b}:refs/remotes/origin/{b}" for b in wanted]
    _remote(repo, ["fetch", "-q", "--no-tags", "--no-recurse-submodules", "origin", *refspecs],
            repo.read)
    base = push_branch if push_branch in heads else source_branch
    repo.git("checkout", "-q", "--force", "--detach", f"refs/remotes/origin/{base}")
    repo.git("clean", "-q", "-f", "-f", "-d", "-x")


def _remote_heads(repo: _Checkout) -> dict[str, str]:
    out = _remote(repo, ["ls-remote", "--heads", "origin"], repo.read)
    heads: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref.removeprefix("refs/heads/")] = sha
    return heads


def _remote(repo: _Checkout, args: list[str], genv: GitEnv) -> str:
    try:
        return run_git(["-C", str(repo.path), *args], genv)
    except GitFailed as failed:
        raise fetch_error(repo.source, failed) from failed


def _commit(repo: _Checkout, result: SetResult, message: str) -> str:
    """Commit exactly the changed files; return the new commit's SHA."""
    files = sorted({c.file for c in result.changes})
    repo.git("add", "--", *files)
    updates = repo.updates
    identity = {"GIT_AUTHOR_NAME": updates.author_name, "GIT_AUTHOR_EMAIL": updates.author_email,
                "GIT_COMMITTER_NAME": updates.author_name,
                "GIT_COMMITTER_EMAIL": updates.author_email}
    with _signing(repo, updates.signing) as (config, extra):
        genv = local_environment(repo.environ, [("core.hooksPath", "/dev/null"), *config])
        genv = GitEnv({**genv.env, **identity, **extra}, genv.secrets)
        sign = ["-S"] if updates.signing else ["--no-gpg-sign"]
        repo.git("commit", "-q", "--no-verify", *sign, "-F", "-", genv=genv,
                 stdin=message.encode())
    return repo.git("rev-parse", "HEAD").strip()


@contextmanager
def _signing(repo: _Checkout,
             signing: Signing | None) -> Iterator[tuple[list[tuple[str, str]], dict[str, str]]]:
    """git configuration and environment that sign the commit (none without ``signing``)."""
    if signing is None:
        yield [("commit.gpgSign", "false")], {}
        return
    key = os.path.abspath(signing.key_file)
    if not os.access(key, os.R_OK):
        raise SourceError(f"source {repo.source.name}: imageUpdates.signingKey.{signing.kind}: "
                          f"{signing.key_file} is not readable")
    if signing.kind == "ssh":
        yield [("gpg.format", "ssh"), ("user.signingKey", key)], {}
        return
    with tempfile.TemporaryDirectory(prefix="fleetsync-sign-") as home:
        env = {"GNUPGHOME": home}
        try:
            fingerprint = _import_gpg_key(repo, key, home)
            yield [("gpg.format", "openpgp"), ("user.signingKey", fingerprint)], env
        finally:
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, **env},
                           capture_output=True, timeout=30, check=False)


def _import_gpg_key(repo: _Checkout, key: str, home: str) -> str:
    """Import the armored secret key into ``home``; return its fingerprint."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GNUPGHOME": home, "LC_ALL": "C"}
    base = ["gpg", "--batch", "--no-tty", "--quiet"]
    where = f"source {repo.source.name}: imageUpdates.signingKey.gpg: {key}"
    try:
        imported = subprocess.run([*base, "--import", key], env=env, capture_output=True,
                                  timeout=60, check=False)
        listing = subprocess.run([*base, "--with-colons", "--list-secret-keys"], env=env,
                                 capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TransientError(f"{where}: gpg: {exc}") from exc
    fingerprints = [ln.split(":")[9] for ln in listing.stdout.splitlines() if ln.startswith("fpr:")]
    if imported.returncode != 0 or not fingerprints:
        raise SourceError(f"{where} holds no usable secret key")
    return fingerprints[0]


def _push(repo: _Checkout) -> bool:
    """Push HEAD to the branch: True when pushed, False when the branch moved meanwhile."""
    refspec = f"HEAD:refs/heads/{repo.branch}"
    try:
        run_git_said(["-C", str(repo.path), "push", "--no-verify", "origin",
                      refspec], repo.write)
        return True
    except GitTimeout as failed:
        raise TransientError(f"source {repo.source.name}: pushing to {repo.branch!r} "
                             f"{failed.stderr}") from failed
    except GitFailed as failed:
        lowered = failed.stderr.lower()
        if any(p in lowered for p in _REFUSED):
            raise SourceError(f"source {repo.source.name}: push to branch {repo.branch!r} of "
                              f"{scrub_url(repo.source.url)} refused with "
                              f"{_credential(repo)}{git_said(failed.stderr)}") from failed
        if any(p in lowered for p in _MOVED):
            return False
        raise _push_error(repo, failed) from failed


def _push_error(repo: _Checkout, failed: GitFailed) -> SourceError | TransientError:
    """A push failure that is neither a refusal nor a moved branch: worded as a push."""
    error = fetch_error(repo.source, failed)
    kind = SourceError if isinstance(error, SourceError) else TransientError
    return kind(f"source {repo.source.name}: pushing to branch {repo.branch!r} of "
                f"{scrub_url(repo.source.url)} failed{git_said(failed.stderr)}")


def _credential(repo: _Checkout) -> str:
    """Which credential was used, by reference only (names, a file path)."""
    auth = repo.updates.write_auth if repo.updates.write_auth != Auth() else repo.source.auth
    named = "writeAuth" if repo.updates.write_auth != Auth() else "the source's auth"
    if auth.ssh_key_file:
        return f"{named} (sshKeyFile {auth.ssh_key_file})"
    names = [f"{field} {value}" for field, value in (("usernameEnv", auth.username_env),
                                                      ("passwordEnv", auth.password_env)) if value]
    return f"{named} ({', '.join(names)})" if names else "no credential"
