"""Git sources for the fetch stage: persistent mirrors, ref resolution, read-only trees.

Each worker host keeps one bare mirror per source under
``root/mirrors/<name>-<hash of url>.git`` and one checkout per commit under
``root/trees/<sha>``. ``fetch`` updates a mirror (under an fcntl lock, so the
processes and threads of one host never fetch the same mirror at once) and
resolves the source's ref to a full commit SHA: the *revision*. ``checkout``
turns a revision into a read-only directory, built in a temporary directory
and renamed into place, so that concurrent callers see a whole tree or none;
a second call for the same SHA is a single ``stat``. ``revision_info`` gives
the author, date and subject for history entries.

All git work goes through ``workers.fetch.gitcli`` (credentials, timeouts, error
mapping, the transports a source may use: ``workers.fetch.gittransport``); the
host's locks, read-only trees, their collection and mirror sizes are
``workers.fetch.gitdisk``'s. This module raises only ``SourceError`` and
``TransientError``. What git said while
fetching travels on to the resolve step, so that a ref git refused without
failing (a shallow source) is reported with git's reason. A source with
``verify`` returns a revision only once ``workers.fetch.gitverify`` has accepted its
signature: a refused head fails the fetch, so the revision recorded for the
source, and applied, stays the last verified one. A ``defaultBranch: true``
source is first turned into the branch the remote's HEAD names now
(``workers.fetch.gitdefault``); ``resolved_ref`` tells which one was followed.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

from shared.errors import SourceError, TransientError
from shared.settings import from_env
from shared.spec.model import DEFAULT_BRANCH, Source
from workers.fetch.gitcli import (DEFAULT_TIMEOUT, GitEnv, GitFailed, GitTimeout, check_url,
                                  fetch_error, git_environment, git_said, local_environment,
                                  missing_ref_error, run_git, run_git_said, scrub_url)
from workers.fetch.gitdisk import (TREES_KEPT, check_size, collect_trees, locked,
                                   make_read_only, remove_tree, touch)
from workers.fetch.gitdefault import as_branch, default_branch, shown
from workers.fetch.gitverify import Verifier

REF_KINDS = ("branch", "tag", "semver", "commit", DEFAULT_BRANCH)
_HEX_RE = re.compile(r"[0-9a-f]{4,64}")
_FULL_SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_BAD_REF_RE = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|^[-/.]|[/.]$|\.lock$")
_STAMP = "fleetsync-fetch"          # in each mirror: when the last fetch began, and what it asked
_DEFAULT = "fleetsync-default-branch"   # in a defaultBranch mirror: the branch last followed


class SourceCache:
    """Bare mirrors and read-only checkouts of Git sources, below one root directory."""

    def __init__(self, root: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT,
                 environ: Mapping[str, str] | None = None,
                 allow_local: bool | None = None, trees_kept: int = TREES_KEPT) -> None:
        """``allow_local``: local paths and ``file://`` sources may be fetched
        (``Settings.allow_local_sources``); None reads it from ``environ`` as the
        settings do (FLEETSYNC_ALLOW_LOCAL_SOURCES). ``trees_kept``: checkouts kept
        besides those in use (older ones are removed as new ones are made)."""
        self.root = Path(root)
        self.trees_kept = trees_kept
        self.timeout = timeout
        self._environ = os.environ if environ is None else environ
        self.allow_local = (from_env(self._environ).allow_local_sources
                            if allow_local is None else allow_local)
        self._verifier = Verifier(self._environ, timeout)

    # -- public API ---------------------------------------------------------

    def fetch(self, source: Source) -> str:
        """Update the source's mirror and return the full commit SHA its ref points at now."""
        _check_source(source)
        mirror = self.mirror_path(source)
        genv = git_environment(source, self._environ, allow_local=self.allow_local,
                               learned_hosts=self.root / "known_hosts" / mirror.stem)
        asked_at = time.time()
        followed = source
        if source.ref_kind == DEFAULT_BRANCH:   # asked at each fetch: the remote may change it
            followed = as_branch(source, default_branch(source, genv, self.timeout))
        with locked(mirror.with_suffix(".lock"), self.timeout * 2, source):
            self._ensure_mirror(mirror, genv)
            sha = self._fetch_resolved(mirror, followed, genv, asked_at)
            if followed is not source:
                (mirror / _DEFAULT).write_text(followed.ref + "\n")
            return sha

    def resolved_ref(self, source: Source) -> str:
        """What the last fetch on this host followed, when the spec does not name it:
        ``main (default branch)`` for ``defaultBranch: true``; "" otherwise."""
        if source.ref_kind != DEFAULT_BRANCH:
            return ""
        try:
            branch = (self.mirror_path(source) / _DEFAULT).read_text().strip()
        except OSError:
            return ""
        return shown(branch) if branch else ""

    def _fetch_resolved(self, mirror: Path, source: Source, genv: GitEnv, asked_at: float) -> str:
        """Fetch and resolve a source whose ref is named (a default branch already resolved)."""
        said = ""
        if not self._already_present(mirror, source, genv):
            said = self._fetch(mirror, source, genv, asked_at)
        sha = self._resolve(mirror, source, genv, said)
        check_size(source, mirror)
        self._verifier.verify_revision(source, mirror, sha)
        return sha

    def checkout(self, source: Source, revision: str) -> Path:
        """A read-only directory holding the tree of ``revision`` (a full SHA), cached by SHA."""
        sha = _full_sha(source, revision)
        dest = self.root / "trees" / sha
        if dest.is_dir():
            touch(dest)                 # in use: the collection below keeps it
            return dest
        mirror = self.mirror_path(source)
        genv = self._local_env()
        if not self._is_commit(mirror, sha, genv):
            raise SourceError(f"source {source.name}: revision {sha} is not in the mirror "
                              "(fetch first)", revision=sha)
        dest.parent.mkdir(parents=True, exist_ok=True)
        # one extraction per tree on this host: the other processes of a cold start wait
        # for it rather than each checking out (and throwing away) the same tree
        lock = self.root / "locks" / f"tree-{sha}.lock"     # not among the trees
        with locked(lock, self.timeout, source):
            if dest.is_dir():
                touch(dest)
                return dest
            tree = self._extract(source, mirror, sha, dest, genv)
        lock.unlink(missing_ok=True)
        collect_trees(dest.parent, self.trees_kept, keep=tree)
        return tree

    def revision_info(self, source: Source, revision: str) -> dict[str, str]:
        """Author, commit time (ISO 8601, UTC) and first message line of ``revision``."""
        sha = _full_sha(source, revision)
        out = self._git_local(source, mirror_args(self.mirror_path(source)) + [
            "log", "-1", "--no-show-signature", "--format=%an%x00%ae%x00%cI%x00%B", sha, "--"])
        name, email, committed, body = (out.split("\x00", 3) + ["", "", "", ""])[:4]
        when = datetime.fromisoformat(committed.strip()).astimezone(timezone.utc)
        return {"revision": sha, "author": name, "author_email": email,
                "committed_at": when.isoformat(), "message": body.strip().split("\n", 1)[0]}

    def revisions_between(self, source: Source, old: str, new: str) -> int:
        """How many commits ``new`` has that ``old`` has not (``git rev-list --count``),
        from this host's mirror."""
        args = mirror_args(self.mirror_path(source)) + [
            "rev-list", "--count", f"{_full_sha(source, old)}..{_full_sha(source, new)}", "--"]
        return int(self._git_local(source, args).strip() or 0)

    def has_commit(self, source: Source, revision: str) -> bool:
        """This host holds ``revision`` (a full SHA) already: checked out, or in the mirror."""
        sha = _full_sha(source, revision)
        if (self.root / "trees" / sha).is_dir():
            return True
        return self._is_commit(self.mirror_path(source), sha, self._local_env())

    def changed_files(self, source: Source, old: str, new: str) -> list[str]:
        """The paths whose content differs between two revisions (``git diff --name-only``,
        renames as a deletion and an addition), from this host's mirror."""
        args = mirror_args(self.mirror_path(source)) + [
            "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff",
            _full_sha(source, old), _full_sha(source, new), "--"]
        return [p for p in self._git_local(source, args).split("\0") if p]

    def tree_entries(self, source: Source, revision: str) -> list[tuple[str, str]]:
        """``(mode, path)`` of every file of ``revision``'s tree (``git ls-tree -r``)."""
        args = mirror_args(self.mirror_path(source)) + [
            "ls-tree", "-r", "-z", "--full-tree", _full_sha(source, revision)]
        found = []
        for entry in self._git_local(source, args).split("\0"):
            head, _, path = entry.partition("\t")
            if path:
                found.append((head.split(" ", 1)[0], path))
        return found

    def mirror_path(self, source: Source) -> Path:
        """``root/mirrors/<name>-<hash of url>.git``: a new URL gets a new mirror."""
        digest = hashlib.sha256(source.url.encode()).hexdigest()[:16]
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", source.name)[:64]
        return self.root / "mirrors" / f"{safe}-{digest}.git"

    # -- mirror -------------------------------------------------------------

    def _ensure_mirror(self, mirror: Path, genv: GitEnv) -> None:
        if (mirror / "objects").is_dir() and (mirror / "HEAD").is_file():
            return
        mirror.parent.mkdir(parents=True, exist_ok=True)
        try:   # idempotent, and we hold the mirror's lock
            run_git(["init", "--bare", "-q", str(mirror)], genv, timeout=self.timeout)
        except GitFailed as exc:
            raise TransientError(f"cannot create mirror {mirror}: {exc.stderr}") from exc

    def _already_present(self, mirror: Path, source: Source, genv: GitEnv) -> bool:
        """A pinned commit that the mirror already holds needs no network at all."""
        return source.ref_kind == "commit" and bool(
            self._commit_candidates(mirror, source.ref.lower(), genv))

    def _fetch(self, mirror: Path, source: Source, genv: GitEnv, asked_at: float) -> str:
        """Fetch the refs the source needs; return what git said (warnings) on success."""
        refspecs = _refspecs(source)
        if _fetched_since(mirror, asked_at, refspecs):
            return ""   # another process fetched the same refs after we asked: reuse it
        started = time.time()
        args = mirror_args(mirror) + ["fetch", "-q", "--prune", "--no-tags",
                                      "--no-write-fetch-head", "--", source.url, *refspecs]
        try:
            said = run_git_said(args, genv, timeout=self.timeout)[1]
        except GitFailed as exc:
            raise fetch_error(source, exc) from exc
        (mirror / _STAMP).write_text(f"{started!r}\n" + "\n".join(refspecs) + "\n")
        return said

    # -- resolving refs -----------------------------------------------------

    def _resolve(self, mirror: Path, source: Source, genv: GitEnv, said: str = "") -> str:
        if source.ref_kind == "branch":
            sha = self._rev(mirror, f"refs/heads/{source.ref}", genv)
        elif source.ref_kind == "tag":
            sha = self._rev(mirror, f"refs/tags/{source.ref}", genv)
        elif source.ref_kind == "semver":
            tag = self._semver_tag(mirror, source, genv, said)
            sha = self._rev(mirror, f"refs/tags/{tag}", genv)
        else:
            sha = self._commit(mirror, source, genv)
        if sha is None:
            raise missing_ref_error(source, said)
        return sha

    def _rev(self, mirror: Path, ref: str, genv: GitEnv) -> str | None:
        """The commit that ``ref`` points at (annotated tags peeled), or None."""
        try:
            out = run_git(mirror_args(mirror) + ["rev-parse", "--verify", "--quiet",
                                                 f"{ref}^{{commit}}"], genv, timeout=self.timeout)
        except GitTimeout as exc:
            raise TransientError(f"git rev-parse {ref}: {exc.stderr}") from exc
        except GitFailed:
            return None
        return out.strip() or None

    def _semver_tag(self, mirror: Path, source: Source, genv: GitEnv, said: str) -> str:
        from shared.semver import source_tag  # only semver sources need it

        tags = self._git_local(source, mirror_args(mirror) + [
            "for-each-ref", "--format=%(refname:strip=2)", "refs/tags"], genv).split()
        return source_tag(source.name, tags, source.ref, scrub_url(source.url), git_said(said))

    def _commit(self, mirror: Path, source: Source, genv: GitEnv) -> str | None:
        found = self._commit_candidates(mirror, source.ref.lower(), genv)
        if len(found) > 1:
            raise SourceError(f"source {source.name}: commit {source.ref!r} is ambiguous "
                              f"({len(found)} commits); give more digits")
        return found[0] if found else None

    def _commit_candidates(self, mirror: Path, prefix: str, genv: GitEnv) -> list[str]:
        """Every commit whose SHA starts with ``prefix`` (never a ref of that name)."""
        names = self._git_local(None, mirror_args(mirror) + [
            "rev-parse", f"--disambiguate={prefix}"], genv).split()
        if not names:
            return []
        listing = self._git_local(None, mirror_args(mirror) + [
            "cat-file", "--batch-check=%(objecttype) %(objectname)"], genv,
            stdin="\n".join(names).encode() + b"\n")
        return [line.split()[1] for line in listing.splitlines() if line.startswith("commit ")]

    def _is_commit(self, mirror: Path, sha: str, genv: GitEnv) -> bool:
        return (mirror / "HEAD").is_file() and self._rev(mirror, sha, genv) == sha

    # -- checkouts ----------------------------------------------------------

    def _extract(self, source: Source, mirror: Path, sha: str, dest: Path, genv: GitEnv) -> Path:
        """Check ``sha`` out into a temp dir next to ``dest``, make it read-only, rename it in."""
        work = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}-", dir=dest.parent))
        index = work.with_name(work.name + ".index")
        try:
            env = GitEnv({**genv.env, "GIT_INDEX_FILE": str(index)}, genv.secrets)
            # git's own checkout refuses paths that would write through symlinks
            self._git_local(source, mirror_args(mirror) + [
                f"--work-tree={work}", "-c", "core.symlinks=true", "-c", "core.autocrlf=false",
                "read-tree", "--reset", "-u", sha], env)
            make_read_only(work)
            try:
                work.rename(dest)
            except OSError:
                if not dest.is_dir():
                    raise
                remove_tree(work)   # another caller won the race with the same content
        except BaseException:
            remove_tree(work)
            raise
        finally:
            index.unlink(missing_ok=True)
        return dest

    # -- helpers ------------------------------------------------------------

    def _local_env(self) -> GitEnv:
        return local_environment(self._environ)

    def _git_local(self, source: Source | None, args: list[str], genv: GitEnv | None = None,
                   stdin: bytes | None = None) -> str:
        """A git command that reads the mirror only; failures are SourceErrors (or transient)."""
        try:
            return run_git(args, genv or self._local_env(), timeout=self.timeout, stdin=stdin)
        except GitTimeout as exc:
            raise TransientError(f"git {exc.command}: {exc.stderr}") from exc
        except GitFailed as exc:
            name = source.name if source else "?"
            raise SourceError(f"source {name}: git {exc.command} failed: {exc.stderr}") from exc


def mirror_args(mirror: Path) -> list[str]:
    return [f"--git-dir={mirror}"]


def _check_source(source: Source) -> None:
    check_url(source)
    if source.ref_kind not in REF_KINDS:
        raise SourceError(f"source {source.name}: unknown ref kind {source.ref_kind!r}")
    if source.ref_kind == "commit":
        if not _HEX_RE.fullmatch(source.ref.lower()):
            raise SourceError(f"source {source.name}: commit {source.ref!r} is not a "
                              "hexadecimal SHA (4 to 64 digits)")
    elif source.ref_kind not in ("semver", DEFAULT_BRANCH) and (not source.ref or _BAD_REF_RE.search(source.ref)):
        raise SourceError(f"source {source.name}: invalid {source.ref_kind} name {source.ref!r}")


def _refspecs(source: Source) -> list[str]:
    """Fetch only what resolving the ref needs."""
    if source.ref_kind == "branch":
        return [f"+refs/heads/{source.ref}:refs/heads/{source.ref}"]
    if source.ref_kind == "tag":
        return [f"+refs/tags/{source.ref}:refs/tags/{source.ref}"]
    if source.ref_kind == "semver":
        return ["+refs/tags/*:refs/tags/*"]
    return ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]


def _fetched_since(mirror: Path, asked_at: float, refspecs: list[str]) -> bool:
    try:
        started, *specs = (mirror / _STAMP).read_text().split()
        return float(started) >= asked_at and specs == refspecs
    except (OSError, ValueError):
        return False


def _full_sha(source: Source, revision: str) -> str:
    if not _FULL_SHA_RE.fullmatch(revision):
        raise SourceError(f"source {source.name}: revision {revision!r} is not a full commit SHA")
    return revision
