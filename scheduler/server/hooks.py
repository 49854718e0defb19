"""What a forge's push notification says, and whether it may be believed (pure).

A webhook is checked before anything else is read from it: GitHub signs the
body with HMAC-SHA256 under the source's secret (``X-Hub-Signature-256:
sha256=<hex>``), GitLab sends the secret itself (``X-Gitlab-Token``), and the
generic endpoint takes either form (Gitea, Forgejo and Gogs sign as GitHub
does; a script may send ``X-Fleetsync-Token``; a registry's push notification,
``scheduler.server.registryhooks``, sends it as a Bearer token). Every comparison is constant
time (``hmac.compare_digest``). Only then is the body parsed: the pushed ref,
the commit it points at now, and the files the pushed commits touched, with
which the server finds the applications that changed (their syncs go first;
the source's fetch reconciles every other unit at the new revision).

``verify`` returns why a request is refused (never echoing what was sent) or
"" when it is genuine; the server logs it and answers the sender only that it
was refused. ``parse_push`` never raises on a strange payload: what it cannot
read, it leaves out; only a body nested too deep to parse safely raises
(``bodies.TooDeep``: the server refuses it with 400).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from scheduler.server import bodies, registryhooks
from shared.spec.model import DEFAULT_BRANCH, Fleet, Source

PROVIDERS = ("github", "gitlab", "generic", "registry")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_PRIORITY_SYNCS = 10     # beyond this, the fetch's reconcile of every cluster serves


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(provider: str, secret: str, headers: Mapping[str, str], body: bytes) -> str:
    """Why the request is not from the forge that knows ``secret``; "" when it is."""
    if provider == "registry":
        return registryhooks.verify(secret, headers)
    signature = headers.get("x-hub-signature-256", "")
    token = headers.get("x-gitlab-token", "") if provider == "gitlab" else \
        headers.get("x-fleetsync-token", "")
    if provider == "github" or (provider == "generic" and signature):
        if not signature:
            return "no X-Hub-Signature-256 header"
        expected = github_signature(secret, body)
        return "" if hmac.compare_digest(signature.encode(), expected.encode()) \
            else "X-Hub-Signature-256 does not match the body under the source's secret"
    if provider == "gitlab" and not token:
        return "no X-Gitlab-Token header"
    if not token:
        return "no X-Hub-Signature-256 or X-Fleetsync-Token header"
    return "" if hmac.compare_digest(token.encode(), secret.encode()) \
        else "the token is not the source's secret"


def event_of(provider: str, headers: Mapping[str, str]) -> str:
    """``push``, ``tag_push``, ``ping`` or the forge's own name of another event."""
    if provider == "github":
        name = headers.get("x-github-event", "")
        return "push" if name == "push" else name or "unknown"
    if provider == "gitlab":
        name = headers.get("x-gitlab-event", "")
        return {"Push Hook": "push", "Tag Push Hook": "tag_push"}.get(name, name or "unknown")
    return "push"


def delivery_of(headers: Mapping[str, str]) -> str:
    """The forge's id of this delivery (the same on a redelivery), or ""."""
    for name in ("x-github-delivery", "x-gitlab-event-uuid", "x-gitea-delivery",
                 "x-fleetsync-delivery", "idempotency-key"):
        if headers.get(name):
            return headers[name][:100]
    return ""


@dataclass(frozen=True)
class Push:
    """What a push notification says: the ref, its new commit, the files touched.

    ``paths`` is None when the notification does not list them (then no
    application is known to have changed, and only the fetch is enqueued)."""

    ref: str = ""
    after: str = ""
    paths: frozenset[str] | None = None


def parse_push(body: bytes) -> Push:
    """The push in a GitHub, GitLab or generic (``{"ref", "after", "paths"}``) body;
    ``bodies.TooDeep`` when it nests deeper than ``bodies.MAX_DEPTH``."""
    try:
        data = bodies.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return Push()
    if not isinstance(data, dict):
        return Push()
    ref, after = data.get("ref"), data.get("after") or data.get("checkout_sha")
    return Push(ref if isinstance(ref, str) else "", after if isinstance(after, str) else "",
                _paths(data))


def _paths(data: dict[str, Any]) -> frozenset[str] | None:
    if isinstance(data.get("paths"), list):
        return frozenset(p for p in data["paths"] if isinstance(p, str))
    commits = data.get("commits")
    if not isinstance(commits, list) or not commits:
        return None
    total = data.get("total_commits_count")
    if isinstance(total, int) and total > len(commits):
        return None                 # GitLab lists 20 commits at most: the rest are unknown
    found: set[str] = set()
    for commit in commits:
        if not isinstance(commit, dict):
            return None
        for key in ("added", "modified", "removed"):
            files = commit.get(key)
            if not isinstance(files, list):
                return None          # GitHub leaves the lists out of very large pushes
            found.update(f for f in files if isinstance(f, str))
    return frozenset(found)


def concerns(source: Source, ref: str) -> str:
    """Why a push of ``ref`` does not move ``source``; "" when it may."""
    if not ref:
        return ""                               # the generic hook may name no ref: fetch
    if source.ref_kind == "branch":
        wanted = f"refs/heads/{source.ref}"
    elif source.ref_kind == "tag":
        wanted = f"refs/tags/{source.ref}"
    elif source.ref_kind == "semver":
        return "" if ref.startswith("refs/tags/") else \
            f"{ref} is not a tag (the source follows the semver range {source.ref})"
    elif source.ref_kind == DEFAULT_BRANCH:     # which branch is the remote's: the fetch asks
        return "" if ref.startswith("refs/heads/") else \
            f"{ref} is not a branch (the source follows the remote's default branch)"
    else:
        return f"the source is pinned to commit {source.ref}"
    return "" if ref == wanted else f"{ref} is not the source's {source.ref_kind} ({wanted})"


def changed_units(fleet: Fleet, source: str, paths: Iterable[str]) -> list[tuple[str, str]]:
    """The (application, cluster) units of ``source`` whose path holds a changed file.

    Files outside every application path (a kustomize base two directories up)
    change units that this cannot see: the fetch reconciles those."""
    paths = list(paths)
    found = []
    for app in fleet.applications.values():
        if app.source != source or app.suspend:
            continue
        for cluster in fleet.clusters_for(app):
            root = _expand(app.path, cluster.variables()).strip("/")
            if root in ("", ".") or any(p == root or p.startswith(root + "/") for p in paths):
                found.append((app.name, cluster.name))
    return found


def clusters_using(fleet: Fleet, source: str) -> list[str]:
    """Clusters with at least one unsuspended application of ``source``."""
    return [c.name for c in fleet.clusters.values()
            if any(a.source == source and not a.suspend for a in fleet.applications_for(c))]


def sync_requests(fleet: Fleet, units: list[tuple[str, str]]) -> list[tuple[str, str | None]]:
    """``units`` as few sync requests: ``(app, None)`` when every cluster of the app
    changed, else one per cluster; [] when that is more than ``MAX_PRIORITY_SYNCS``."""
    by_app: dict[str, list[str]] = {}
    for app, cluster in units:
        by_app.setdefault(app, []).append(cluster)
    out: list[tuple[str, str | None]] = []
    for app, clusters in by_app.items():
        every = {c.name for c in fleet.clusters_for(fleet.applications[app])}
        out += [(app, None)] if set(clusters) == every else [(app, c) for c in clusters]
    return out if len(out) <= MAX_PRIORITY_SYNCS else []


def _expand(path: str, variables: Mapping[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), path)
