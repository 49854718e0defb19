"""The remote's default branch, for a source with ``defaultBranch: true``.

Argo CD's ``targetRevision: HEAD`` follows whatever branch the remote's ``HEAD``
names. ``default_branch`` asks the remote at each fetch (``git ls-remote --symref
URL HEAD``, through ``workers.fetch.gitcli`` with the source's own environment:
the same transports, credentials and host keys as the fetch itself), so that a
change of the remote's default branch is followed by the next fetch. The fetch
then goes on as for ``branch: <that name>`` (``as_branch``). A remote whose HEAD
is detached or missing names no branch: that is a ``SourceError`` naming the source.
"""

from __future__ import annotations

import dataclasses

from shared.errors import SourceError
from shared.git_urls import scrub_url
from shared.refnames import ref_name_problem
from shared.spec.model import Source
from workers.fetch.gitcli import GitEnv, GitFailed, fetch_error, run_git

_SYMREF = "ref: refs/heads/"


def default_branch(source: Source, genv: GitEnv, timeout: float) -> str:
    """The branch the remote's ``HEAD`` points at now."""
    try:
        out = run_git(["ls-remote", "--symref", "--", source.url, "HEAD"], genv, timeout=timeout)
    except GitFailed as exc:
        raise fetch_error(source, exc) from exc
    return branch_of(source, out)


def branch_of(source: Source, listing: str) -> str:
    """The branch of ``ref: refs/heads/<branch>\\tHEAD`` in ls-remote's output."""
    for line in listing.splitlines():
        target, _, name = line.partition("\t")
        if name.strip() == "HEAD" and target.startswith(_SYMREF):
            branch = target.removeprefix(_SYMREF).strip()
            if ref_name_problem("branch", branch) is None:
                return branch
    state = "is detached (not a symbolic ref)" if listing.strip() else "is missing"
    raise SourceError(f"source {source.name}: the HEAD of {scrub_url(source.url)} {state}, so "
                      "it names no default branch; set HEAD on the remote to a branch, or give "
                      "branch: NAME instead of defaultBranch: true")


def as_branch(source: Source, branch: str) -> Source:
    """``source`` following ``branch`` by name: what the rest of the fetch works with."""
    return dataclasses.replace(source, ref_kind="branch", ref=branch)


def shown(branch: str) -> str:
    """How the resolved branch is recorded in the source's status: ``main (default branch)``."""
    return f"{branch} (default branch)"
