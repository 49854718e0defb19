"""A forge's API for previews: a commit status and one comment on a pull request, kept up to date.

GitHub (``provider: github``) and GitLab (``provider: gitlab``) routes of the
fleet spec name the API, the repository or project and the variable holding
the token; ``Forge`` speaks to that API only:

    status(sha, state, description, url)
        GitHub  POST {api}/repos/{repo}/statuses/{sha}          context fleetsync/preview
        GitLab  POST {api}/projects/{project}/statuses/{sha}    name    fleetsync/preview
    comment(number, body, known_id) -> id
        known id: GitHub PATCH {api}/repos/{repo}/issues/comments/{id}
                  GitLab PUT   {api}/projects/{project}/merge_requests/{iid}/notes/{id}
        none, or gone (404): the pull request's comments are listed for the marker
                  ``<!-- fleetsync-preview -->`` and that one is edited; only when no
                  comment has it is one created (POST), so a pull request has one.

States are fleetsync's (``pending``, ``success``, ``failure``, ``error``) and
written in GitLab's words there (``running``, ``success``, ``failed``).

The token is read from the environment when a request is made, sent only to
the route's ``api`` origin (every URL is built from it), never logged, and a
redirect is never followed (``send._NoRedirect``): a 3xx is a failed request.
``ForgeError.transient`` says whether trying again may help (429, 5xx, no
answer); the poster backs off (``send.backoff``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Mapping

from scheduler.notify.send import DESCRIPTION_CHARS, _NoRedirect, _retry_after
from shared.spec.model import Route

CONTEXT = "fleetsync/preview"
MARKER = "<!-- fleetsync-preview -->"
GITLAB_STATES = {"pending": "running", "success": "success", "failure": "failed",
                 "error": "failed"}
MAX_PAGES = 10              # comments listed looking for the marker: 1,000 at most

_OPENER = urllib.request.build_opener(_NoRedirect)


class ForgeError(Exception):
    def __init__(self, message: str, transient: bool, status: int = 0,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status
        self.retry_after = retry_after


Call = Callable[[str, str, Mapping[str, str], bytes | None], Any]


def http_call(method: str, url: str, headers: Mapping[str, str], body: bytes | None,
              timeout: float = 10.0) -> Any:
    """One request with the standard library, no redirects; the JSON answer."""
    req = urllib.request.Request(url, data=body, method=method, headers={
        "User-Agent": "fleetsync-preview", "Content-Type": "application/json", **headers})
    try:
        with _OPENER.open(req, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as err:
        if 300 <= err.code < 400:
            raise ForgeError(f"{method} HTTP {err.code}: redirected, not followed (a redirect "
                             "would carry the token)", False, err.code) from err
        transient = err.code in (408, 429) or err.code >= 500
        raise ForgeError(f"{method} HTTP {err.code}", transient, err.code,
                         _retry_after(err.headers.get("Retry-After"))) from err
    except (urllib.error.URLError, OSError) as err:
        raise ForgeError(f"{method}: no answer: {getattr(err, 'reason', err)}", True) from err
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None


class Forge:
    """The API of one ``github`` or ``gitlab`` route."""

    def __init__(self, route: Route, env: Mapping[str, str], call: Call = http_call) -> None:
        self.route, self.env, self.call = route, env, call
        self.gitlab = route.provider == "gitlab"
        where = urllib.parse.quote(route.repository, safe="")
        self.base = f"{route.api}/projects/{where}" if self.gitlab \
            else f"{route.api}/repos/{route.repository}"

    def _headers(self) -> dict[str, str]:
        token = self.env.get(self.route.token_env or "", "")
        if not token:
            raise ForgeError(f"route {self.route.name}: {self.route.token_env} is not set",
                             False)
        if self.gitlab:
            return {"PRIVATE-TOKEN": token}
        return {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        return self.call(method, self.base + path, self._headers(), data)

    def status(self, sha: str, state: str, description: str, url: str = "") -> None:
        description = description if len(description) <= DESCRIPTION_CHARS else \
            description[:DESCRIPTION_CHARS - 3] + "..."
        body: dict[str, Any] = {"description": description}
        if self.gitlab:
            body.update(state=GITLAB_STATES[state], name=CONTEXT)
        else:
            body.update(state=state, context=CONTEXT)
        if url:
            body["target_url"] = url
        self._send("POST", f"/statuses/{sha}", body)

    def comment(self, number: int, body: str, known_id: int | None = None) -> int:
        """Create or edit the pull request's one preview comment; its id."""
        for look in (lambda: known_id, lambda: self.find(number)):
            comment_id = look()
            if comment_id is None:
                continue
            try:
                self._send(*self._edit(number, comment_id), {"body": body})
                return comment_id
            except ForgeError as err:
                if err.status != 404:       # deleted by someone: look again, or create
                    raise
        path = f"/merge_requests/{number}/notes" if self.gitlab else f"/issues/{number}/comments"
        made = self._send("POST", path, {"body": body})
        if not isinstance(made, dict) or not isinstance(made.get("id"), int):
            raise ForgeError(f"POST {path}: the answer names no comment id", False)
        return int(made["id"])

    def _edit(self, number: int, comment_id: int) -> tuple[str, str]:
        if self.gitlab:
            return "PUT", f"/merge_requests/{number}/notes/{comment_id}"
        return "PATCH", f"/issues/comments/{comment_id}"

    def find(self, number: int) -> int | None:
        """The id of the pull request's comment that carries the marker, if any."""
        path = f"/merge_requests/{number}/notes" if self.gitlab else f"/issues/{number}/comments"
        for page in range(1, MAX_PAGES + 1):
            found = self._send("GET", f"{path}?per_page=100&page={page}")
            if not isinstance(found, list):
                return None
            for item in found:
                if isinstance(item, dict) and MARKER in str(item.get("body", "")) \
                        and isinstance(item.get("id"), int):
                    return int(item["id"])
            if len(found) < 100:
                return None
        return None
