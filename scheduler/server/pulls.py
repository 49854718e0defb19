"""What a forge's pull-request notification says, and whether it asks for a preview (pure).

GitHub sends ``pull_request`` events (``X-GitHub-Event: pull_request``); a
preview is run for the actions that put a new head on the pull request
(``opened``, ``synchronize``, ``reopened``) and every other action (closed,
labeled, edited...) is acknowledged and ignored. GitLab sends ``Merge Request
Hook``; a preview is run for ``open`` and ``reopen``, and for ``update`` only
when it carries ``oldrev`` (a new commit, not a new title or label).

The head is previewed by its commit SHA, which the forge serves from the base
repository (it keeps ``refs/pull/N/head``, ``refs/merge-requests/N/head``), so a
pull request from a fork is previewed too. The base is the branch it targets.

``parse`` never raises on a strange payload: what it cannot read makes the
pull request ``None`` with the reason; only a body nested too deep raises
(``bodies.TooDeep``). ``same_repository`` checks that the pull request belongs
to the source the hook was sent for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from scheduler.server import bodies
from shared.git_urls import transport

EVENTS = {"github": "pull_request", "gitlab": "Merge Request Hook"}
GITHUB_ACTIONS = ("opened", "synchronize", "reopened")
GITLAB_ACTIONS = ("open", "reopen", "update")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class PullRequest:
    provider: str
    repository: str             # owner/repo, or GitLab's group/project
    number: int
    head_sha: str
    base: str                   # the branch it targets
    url: str                    # its page on the forge
    urls: tuple[str, ...] = ()  # the repository's clone and web URLs

    def origin(self) -> dict[str, Any]:
        """The preview record's ``origin``: where it came from, never a credential."""
        return {"provider": self.provider, "repository": self.repository,
                "number": self.number, "head_sha": self.head_sha, "url": self.url}


def is_pull_event(provider: str, event: str) -> bool:
    return EVENTS.get(provider) == event


def parse(provider: str, body: bytes) -> tuple[PullRequest | None, str]:
    """The pull request to preview, or None and why not."""
    try:
        data = bodies.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None, "the body is not JSON"
    if not isinstance(data, dict):
        return None, "the body is not a JSON object"
    return _gitlab(data) if provider == "gitlab" else _github(data)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _web(value: Any) -> str:
    """A page's address only when it is http(s): it becomes a link on the dashboard."""
    url = _text(value)
    return url if url.startswith(("https://", "http://")) and not any(
        c.isspace() or c in "\"'<>" for c in url) else ""


def _github(data: dict[str, Any]) -> tuple[PullRequest | None, str]:
    action = _text(data.get("action"))
    if action not in GITHUB_ACTIONS:
        return None, f"action {action or 'none'!r} brings no new head (previews on " \
                     f"{', '.join(GITHUB_ACTIONS)})"
    pr, repo = data.get("pull_request"), data.get("repository")
    if not isinstance(pr, dict) or not isinstance(repo, dict):
        return None, "no pull_request or repository in the body"
    head, base = pr.get("head"), pr.get("base")
    sha = _text(head.get("sha")) if isinstance(head, dict) else ""
    branch = _text(base.get("ref")) if isinstance(base, dict) else ""
    number = pr.get("number", data.get("number"))
    name = _text(repo.get("full_name"))
    if not (_SHA.fullmatch(sha) and branch and isinstance(number, int) and name):
        return None, "the pull request's number, head sha, base branch or repository is missing"
    urls = tuple(_text(repo.get(k)) for k in ("clone_url", "ssh_url", "html_url", "git_url"))
    return PullRequest("github", name, number, sha, branch, _web(pr.get("html_url")),
                       tuple(u for u in urls if u)), ""


def _gitlab(data: dict[str, Any]) -> tuple[PullRequest | None, str]:
    mr, project = data.get("object_attributes"), data.get("project")
    if not isinstance(mr, dict) or not isinstance(project, dict):
        return None, "no object_attributes or project in the body"
    action = _text(mr.get("action"))
    if action not in GITLAB_ACTIONS:
        return None, f"action {action or 'none'!r} brings no new head (previews on " \
                     f"{', '.join(GITLAB_ACTIONS)})"
    if action == "update" and not mr.get("oldrev"):
        return None, "an update without a new commit (no oldrev)"
    last = mr.get("last_commit")
    sha = _text(last.get("id")) if isinstance(last, dict) else ""
    number, branch = mr.get("iid"), _text(mr.get("target_branch"))
    name = _text(project.get("path_with_namespace"))
    if not (_SHA.fullmatch(sha) and branch and isinstance(number, int) and name):
        return None, "the merge request's iid, last commit, target branch or project is missing"
    urls = tuple(_text(project.get(k)) for k in ("git_http_url", "git_ssh_url", "web_url"))
    return PullRequest("gitlab", name, number, sha, branch, _web(mr.get("url")),
                       tuple(u for u in urls if u)), ""


def repository_key(url: str) -> tuple[str, str]:
    """``(host, path)`` of a repository URL, lower case, without ``.git`` or a trailing /:
    ``git@github.com:Org/Repo.git`` and ``https://github.com/org/repo`` are the same."""
    way = transport(url)
    if "://" in url:
        path = urlsplit(url).path
    else:
        path = url.split(":", 1)[1] if way.kind == "ssh" else url
    path = path.strip("/").lower()
    path = path[:-4] if path.endswith(".git") else path
    return (way.host or "").lower(), path


def same_repository(source_url: str, pull: PullRequest) -> str:
    """Why the pull request is not of the repository at ``source_url``; "" when it is.
    A local source (a path on the workers) is taken as the forge's."""
    if transport(source_url).local:
        return ""
    wanted = repository_key(source_url)
    if any(repository_key(u) == wanted for u in pull.urls):
        return ""
    return f"the pull request is on {pull.repository}, not the source's repository"
