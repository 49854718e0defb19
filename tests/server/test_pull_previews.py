"""Pull requests previewed through ``fleetsync server``: the real server process on the real Redis,
with loopback GitHub and GitLab APIs (``tests/support/forge_api.py``) as the forges.

No clusters here: the workers' part (filling the preview's record) is played by the
test through ``shared.state.previews``, the store the workers fill; what the server
enqueued is read back from the broker's queue. ``test_pull_preview_e2e.py`` runs the
same flow on real workers and a real apiserver.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
import requests

from scheduler.server.hooks import github_signature
from shared.state import previews
from tests.support.broker import _call
from tests.support.forge_api import ForgeApi
from tests.support.serverproc import ServerProcess

SECRET = "pull-request-webhook-secret"
GH_TOKEN, GL_TOKEN = "gh-" + "x" * 37, "gl-" + "y" * 37
OPS, VIEWER, WEB = "o" * 40, "v" * 40, "w" * 40
SHA1, SHA2, SHA3 = "1" * 40, "2" * 40, "3" * 40


def spec(github: str, gitlab: str) -> str:
    return f"""sources:
  - name: git
    url: https://github.com/Org/Fleet.git
    branch: main
    webhook: {{secretEnv: TEST_HOOK_SECRET}}
  - name: lab
    url: git@gitlab.example.com:group/fleet.git
    branch: main
    webhook: {{secretEnv: TEST_HOOK_SECRET}}
clusters:
  - {{name: prod, kubeconfig: /nonexistent, labels: {{env: production}}}}
  - {{name: stage, kubeconfig: /nonexistent, labels: {{env: staging}}}}
applications:
  - {{name: web, source: git, path: apps/web, clusters: {{names: [prod, stage]}}}}
  - {{name: api, source: git, path: apps/api, clusters: {{names: [prod]}}}}
  - {{name: lab-web, source: lab, path: apps/web, clusters: {{names: [prod]}}}}
notifications:
  routes:
    - {{name: gh, provider: github, api: "{github}", repository: org/fleet, tokenEnv: GH_TOKEN}}
    - {{name: gl, provider: gitlab, api: "{gitlab}", project: group/fleet, tokenEnv: GL_TOKEN}}
"""


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, str, ForgeApi, ForgeApi]]:
    from tests.conftest import new_redis_db

    tmp = tmp_path_factory.mktemp("pull-previews")
    url = new_redis_db(redis_url)
    github, gitlab = ForgeApi(GH_TOKEN), ForgeApi(GL_TOKEN, gitlab=True)
    (tmp / "fleet.yaml").write_text(spec(github.url, gitlab.url))
    (tmp / "tokens").write_text(f"ops scopes=read,sync,preview {OPS}\nviewer scopes=read "
                                f"{VIEWER}\nweb-team scopes=read,preview apps=web {WEB}\n")
    env = {**os.environ, "FLEETSYNC_REDIS_URL": url, "FLEETSYNC_FLEET": str(tmp / "fleet.yaml"),
           "FLEETSYNC_LOG_LEVEL": "INFO", "TEST_HOOK_SECRET": SECRET, "GH_TOKEN": GH_TOKEN,
           "GL_TOKEN": GL_TOKEN, "FLEETSYNC_SERVER_TOKEN_FILE": str(tmp / "tokens"),
           "FLEETSYNC_SERVER_URL": "https://fleetsync.example.com/"}
    server = ServerProcess(env, tmp / "server.log")
    try:
        server.wait_ready()
        yield server, url, github, gitlab
    finally:
        server.stop()
        github.close()
        gitlab.close()


def client(url: str) -> Any:
    return redis.Redis.from_url(url, decode_responses=True)


def github_event(action: str, sha: str, number: int = 7) -> bytes:
    return json.dumps({
        "action": action, "number": number,
        "pull_request": {"number": number, "html_url": f"https://github.com/org/fleet/pull/{number}",
                         "head": {"sha": sha, "ref": "feature"}, "base": {"ref": "main"}},
        "repository": {"full_name": "org/fleet", "clone_url": "https://github.com/org/fleet.git",
                       "ssh_url": "git@github.com:org/fleet.git"}}).encode()


def gitlab_event(action: str, sha: str, oldrev: str | None = None, iid: int = 3) -> bytes:
    attrs: dict[str, Any] = {"iid": iid, "action": action, "target_branch": "main",
                             "source_branch": "feature", "last_commit": {"id": sha},
                             "url": f"https://gitlab.example.com/group/fleet/-/merge_requests/{iid}"}
    if oldrev:
        attrs["oldrev"] = oldrev
    return json.dumps({"object_kind": "merge_request", "object_attributes": attrs, "project": {
        "path_with_namespace": "group/fleet", "git_ssh_url": "git@gitlab.example.com:group/fleet.git",
        "git_http_url": "https://gitlab.example.com/group/fleet.git"}}).encode()


def send_github(server: ServerProcess, body: bytes, secret: str = SECRET,
                delivery: str = "") -> requests.Response:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "pull_request",
               "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
               "X-Hub-Signature-256": github_signature(secret, body)}
    return requests.post(f"{server.base}/hooks/github/git", data=body, headers=headers, timeout=30)


def send_gitlab(server: ServerProcess, body: bytes, token: str = SECRET) -> requests.Response:
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": "Merge Request Hook",
               "X-Gitlab-Token": token, "X-Gitlab-Event-UUID": str(uuid.uuid4())}
    return requests.post(f"{server.base}/hooks/gitlab/lab", data=body, headers=headers, timeout=30)


def units(app: str, *, secret: bool = False) -> list[dict[str, Any]]:
    obj = {"apiVersion": "v1", "kind": "Secret" if secret else "ConfigMap", "namespace": "web",
           "name": "settings", "action": "update", "fields": ["data.mode"], "message": ""}
    return [{"app": app, "cluster": "prod", "base_revision": "b" * 40, "revision": SHA1,
             "outcome": "changed", "message": "", "objects": [obj]},
            {"app": app, "cluster": "stage", "base_revision": "b" * 40, "revision": SHA1,
             "outcome": "unchanged", "message": "", "objects": []}]


def finish(url: str, pid: str, records: list[dict[str, Any]]) -> None:
    """What the workers do: every cluster's part, then the preview done."""
    c = client(url)
    previews.set_total(c, pid, 1)
    previews.add_units(c, pid, records)
    previews.update(c, pid, state="done")


def queued_previews(url: str) -> list[list]:
    return [args for name, args, _ in (_call(json.loads(raw))
                                       for raw in client(url).lrange("reconcile", 0, -1))
            if name == "fleetsync.preview"]


def test_a_pull_request_gets_one_status_and_one_comment_edited_on_each_push(served) -> None:
    server, url, github, _ = served
    opened = send_github(server, github_event("opened", SHA1))
    assert opened.status_code == 202, opened.text
    pid = opened.json()["preview"]
    assert opened.json()["url"] == f"https://fleetsync.example.com/previews/{pid}"
    assert opened.json()["posting"] == "route gh"
    assert [pid, "git", SHA1] in queued_previews(url)
    meta = previews.load(client(url), pid)
    assert meta is not None and meta["origin"] == {
        "provider": "github", "repository": "org/fleet", "number": 7, "head_sha": SHA1,
        "url": "https://github.com/org/fleet/pull/7"}
    assert meta["revision"] == SHA1 and meta["base"] == "main"
    github.wait("the pending status", lambda: len(github.statuses()) == 1)
    pending = github.statuses()[0]
    assert pending["state"] == "pending" and pending["context"] == "fleetsync/preview"
    assert pending["target_url"] == f"https://fleetsync.example.com/previews/{pid}"
    assert github.got("POST", f"/repos/org/fleet/statuses/{SHA1}")
    assert not github.got(part="/comments")         # the comment comes with the result

    finish(url, pid, units("web", secret=True))
    github.wait("the final status and the comment",
                lambda: len(github.statuses()) == 2 and github.got("POST", "/comments"))
    final = github.statuses()[1]
    assert final["state"] == "success"
    assert final["description"] == "1 app, 1 cluster changes"
    (created,) = [c for c in github.got("POST", "/issues/7/comments")]
    assert created.headers["Authorization"] == f"Bearer {GH_TOKEN}"
    body = created.body["body"]
    assert body.startswith("<!-- fleetsync-preview -->") and "| prod | changed |" in body
    assert "<details>" in body and f"/previews/{pid}" in body
    (comment_id,) = github.comments

    pushed = send_github(server, github_event("synchronize", SHA2))
    assert pushed.status_code == 202, pushed.text
    second = pushed.json()["preview"]
    assert second != pid
    github.wait("the second pending status", lambda: len(github.statuses()) == 3)
    refused = units("web")
    refused[0].update(outcome="refused", message="namespace kube-system is not allowed")
    finish(url, second, refused)
    github.wait("the comment edited", lambda: github.got("PATCH"))
    (edit,) = github.got("PATCH")
    assert edit.path == f"/repos/org/fleet/issues/comments/{comment_id}"
    assert "refused" in edit.body["body"] and "kube-system" in edit.body["body"]
    github.wait("the failure status", lambda: len(github.statuses()) == 4)
    assert github.statuses()[3]["state"] == "failure"
    assert github.statuses()[3]["description"] == "1 refused"
    assert len(github.got("POST", "/comments")) == 1 and list(github.comments) == [comment_id]
    assert GH_TOKEN not in server.log.read_text()


def test_a_bad_signature_is_refused_and_starts_nothing(served) -> None:
    server, url, github, _ = served
    before = previews.recent(client(url))
    calls = len(github.calls)
    forged = send_github(server, github_event("opened", SHA3, number=9), secret="not-the-secret")
    assert forged.status_code == 401
    unsigned = requests.post(f"{server.base}/hooks/github/git",
                             data=github_event("opened", SHA3, number=9),
                             headers={"X-GitHub-Event": "pull_request"}, timeout=10)
    assert unsigned.status_code == 401
    assert previews.recent(client(url)) == before
    assert not any(args[0] not in {p["id"] for p in before} for args in queued_previews(url))
    assert len(github.calls) == calls


def test_actions_without_a_new_head_are_acknowledged_and_ignored(served) -> None:
    server, url, _, _ = served
    before = len(previews.recent(client(url)))
    for action in ("closed", "labeled", "edited"):
        answer = send_github(server, github_event(action, SHA3, number=11))
        assert answer.status_code == 202 and "brings no new head" in answer.json()["ignored"]
    other = json.loads(github_event("opened", SHA3, number=11))
    other["repository"] = {"full_name": "evil/fleet", "clone_url": "https://github.com/evil/fleet"}
    answer = send_github(server, json.dumps(other).encode())
    assert answer.status_code == 202 and "not the source's repository" in answer.json()["ignored"]
    assert len(previews.recent(client(url))) == before
    first = send_github(server, github_event("opened", SHA3, number=11), delivery="d-11")
    assert first.status_code == 202 and first.json()["preview"]
    again = send_github(server, github_event("opened", SHA3, number=11), delivery="d-11")
    assert again.status_code == 202 and again.json()["ignored"] == "delivery seen before"
    assert len(previews.recent(client(url))) == before + 1


def test_a_gitlab_merge_request_gets_a_status_and_one_note_updated_in_place(served) -> None:
    server, url, _, gitlab = served
    opened = send_gitlab(server, gitlab_event("open", SHA1))
    assert opened.status_code == 202, opened.text
    pid = opened.json()["preview"]
    assert [pid, "lab", SHA1] in queued_previews(url)
    gitlab.wait("the running status", lambda: len(gitlab.statuses()) == 1)
    assert gitlab.statuses()[0]["state"] == "running"
    assert gitlab.got("POST", f"/projects/group%2Ffleet/statuses/{SHA1}")
    finish(url, pid, units("lab-web"))
    gitlab.wait("the note", lambda: gitlab.got("POST", "/notes"))
    (note_id,) = gitlab.comments
    assert gitlab.got("POST", "/notes")[0].headers["Private-Token"] == GL_TOKEN
    title = send_gitlab(server, gitlab_event("update", SHA1))      # a new title: no oldrev
    assert title.status_code == 202 and "no oldrev" in title.json()["ignored"]
    pushed = send_gitlab(server, gitlab_event("update", SHA2, oldrev=SHA1))
    assert pushed.status_code == 202, pushed.text
    finish(url, pushed.json()["preview"], units("lab-web"))
    gitlab.wait("the note edited", lambda: gitlab.got("PUT"))
    assert gitlab.got("PUT")[0].path == f"/projects/group%2Ffleet/merge_requests/3/notes/{note_id}"
    assert len(gitlab.got("POST", "/notes")) == 1 and list(gitlab.comments) == [note_id]
    gitlab.wait("the final status", lambda: [s["state"] for s in gitlab.statuses()] ==
                ["running", "success", "running", "success"])
    assert all(s["name"] == "fleetsync/preview" for s in gitlab.statuses())
    forged = send_gitlab(server, gitlab_event("open", SHA3, iid=4), token="wrong")
    assert forged.status_code == 401


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_api_post_needs_the_preview_scope_and_names_bad_fields(served) -> None:
    server, url, _, _ = served
    api = f"{server.base}/api/v1/previews"
    body = {"source": "git", "ref": "feature", "base": "main", "apps": ["web"],
            "clusterSelector": {"matchLabels": {"env": "production"}}}
    assert requests.post(api, json=body, timeout=10).status_code == 401
    wrong = requests.post(api, json=body, headers=bearer(VIEWER), timeout=10)
    assert wrong.status_code == 403 and "lacks the scope 'preview'" in wrong.json()["error"]
    for bad, field in [({"ref": "x"}, "source"), ({**body, "source": "nope"}, "source"),
                       ({**body, "ref": 3}, "ref"), ({"source": "git"}, "ref"),
                       ({**body, "revision": "xyz"}, "revision"),
                       ({**body, "apps": ["ghost"]}, "apps"), ({**body, "apps": "web"}, "apps"),
                       ({**body, "clusterSelector": {"matchLabels": {"env": 1}}},
                        "clusterSelector.matchLabels"),
                       ({**body, "clusterSelector": []}, "clusterSelector"),
                       ({**body, "clusterSelector": {"names": ["prod"]}}, "clusterSelector"),
                       ({**body, "colour": "red"}, "colour"),
                       ({**body, "ref": "bad..ref"}, "ref")]:
        answer = requests.post(api, json=bad, headers=bearer(OPS), timeout=10)
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["error"].startswith(field), (bad, answer.json())
    others = requests.post(api, json={**body, "apps": ["api"]}, headers=bearer(WEB), timeout=10)
    assert others.status_code == 403 and "'api'" in others.json()["error"]
    made = requests.post(api, json=body, headers=bearer(WEB), timeout=10)
    assert made.status_code == 202, made.text
    pid = made.json()["id"]
    assert made.json()["url"] == f"https://fleetsync.example.com/previews/{pid}"
    assert [pid, "git", "feature"] in queued_previews(url)
    finish(url, pid, units("web"))
    got = requests.get(f"{api}/{pid}", headers=bearer(VIEWER), timeout=10).json()
    assert got["id"] == pid and got["state"] == "done" and got["requested_by"] == "api:web-team"
    assert got["selector"] == {"env": "production"} and got["apps"] == ["web"]
    assert got["units"] == units("web") and got["summary"]["units_changed"] == 1
    assert got["costs"] == {"requests": 0, "dry_runs": 0, "writes": 0}
    listed = requests.get(api, headers=bearer(VIEWER), timeout=10).json()["previews"]
    assert listed[0]["id"] == pid and "units" not in listed[0]
    for unknown in ("0123456789ab", "not-an-id", "..%2F..%2Fx"):
        assert requests.get(f"{api}/{unknown}", headers=bearer(VIEWER),
                            timeout=10).status_code == 404
