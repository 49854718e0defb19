"""The pure parts of previews on pull requests: the Markdown, the pull-request payloads, the
commit status, the gitlab route of the spec and the server's Redis ACL. No server, no Redis."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from scheduler import preview_markdown as md
from scheduler.redis_acl import server as server_role
from scheduler.server import preview_poster, pulls
from shared.errors import SpecError
from shared.spec.load import load
from shared.state import previews

SHA = "a" * 40


def unit(app: str, cluster: str, outcome: str = "changed", objects: list | None = None,
         message: str = "") -> dict[str, Any]:
    return {"app": app, "cluster": cluster, "base_revision": "b" * 40, "revision": SHA,
            "outcome": outcome, "message": message, "objects": objects or []}


def obj(kind: str, name: str, action: str = "update", fields: list[str] | None = None,
        namespace: str = "web") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "namespace": namespace, "name": name,
            "action": action, "fields": fields or [], "message": ""}


def record(units: list[dict[str, Any]], state: str = "done") -> dict[str, Any]:
    return {"id": "abc123", "source": "git", "ref": "feature", "base": "main",
            "revision": SHA, "base_revision": "b" * 40, "state": state, "message": "",
            "done": 1, "total": 1, "units": units, "summary": previews.summary(units)}


def test_tables_and_details_are_well_formed() -> None:
    units = [unit("web", "prod", objects=[obj("ConfigMap", "settings", fields=["data.mode"]),
                                          obj("Service", "web", "create"),
                                          obj("Deployment", "old", "prune")]),
             unit("web", "stage", "unchanged"),
             unit("api", "prod", "refused", [obj("Deployment", "api", "refused")],
                  message="namespace kube-system is not allowed"),
             unit("db", "prod", "unchanged")]
    text = md.render(record(units), link="https://fleetsync.example.com/previews/abc123")
    assert text.startswith(md.MARKER + "\n### fleetsync preview: 1 app, 1 cluster changes, 1 "
                                       "refused\n")
    assert "[Full result](https://fleetsync.example.com/previews/abc123)" in text
    assert text.count("<details>") == text.count("</details>") == 2
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert all(line.count("|") == 7 for line in rows)
    assert "| prod | changed | 1 | 1 | 1 | 0 |" in rows
    assert "| prod | refused | 0 | 0 | 0 | 1 |" in rows
    assert "1 cluster unchanged." in text and "Unchanged: db." in text
    assert "- update v1 ConfigMap web/settings: data.mode" in text
    assert "kube\\-system" not in text and "namespace kube-system is not allowed" in text


def test_a_secret_shows_its_field_paths_and_never_a_value() -> None:
    leaky = obj("Secret", "db", fields=["data.password: hunter2 -> s3cret", "stringData.token=x"])
    text = md.render(record([unit("web", "prod", objects=[leaky])]))
    assert "data.password" in text and "stringData.token" in text
    assert "hunter2" not in text and "s3cret" not in text and "=x" not in text
    cm = obj("ConfigMap", "db", fields=["data.mode: a -> b"])
    assert "a -&gt; b" in md.render(record([unit("web", "prod", objects=[cm])]))


def test_many_units_are_cut_to_the_limit_at_whole_sections_with_the_link() -> None:
    units = [unit(f"app-{a:03}", f"cluster-{c:02}", objects=[
        obj("ConfigMap", f"cm-{i}", fields=["data.key"]) for i in range(5)])
        for a in range(100) for c in range(10)]
    link = "https://fleetsync.example.com/previews/abc123"
    whole = md.render(record(units), link=link)
    assert len(whole) > md.GITHUB_LIMIT
    cut = md.render(record(units), limit=md.GITHUB_LIMIT, link=link)
    assert len(cut) <= md.GITHUB_LIMIT and cut.startswith(md.MARKER)
    assert cut.count("<details>") == cut.count("</details>") > 0
    last = cut.rstrip().splitlines()[-1]
    assert last.startswith("**Cut to fit**") and f"[the full result]({link})" in last
    assert re.search(r"\((\d+) sections left out\)", last)
    assert md.render(record(units[:2]), limit=md.GITHUB_LIMIT) == md.render(record(units[:2]))
    assert len(md.render(record(units), limit=200, link=link)) <= 200


def test_names_from_git_cannot_open_markup() -> None:
    evil = unit("</details><script>x</script>", "a|b", objects=[
        obj("ConfigMap", "[x](https://evil.example)", fields=["`data`"])])
    text = md.render(record([evil]), link="https://h/p)(x")
    assert "<script>" not in text and "</details><" not in text
    assert "| a\\|b |" in text and "\\[x\\](https" in text and "\\`data\\`" in text
    assert "(https://h/p%29%28x)" in text


def test_headlines() -> None:
    assert md.headline(record([])) == "no change (0 units considered)"
    many = [unit(f"a{i}", f"c{j}") for i in range(3) for j in range(12)]
    many.append(unit("a0", "c0", "refused"))
    assert md.headline(record(many)) == "3 apps, 12 clusters change, 1 refused"
    assert md.headline({**record([]), "state": "running", "done": 2, "total": 5}) == \
        "running (2 of 5 clusters)"
    assert md.headline({**record([]), "state": "failed", "message": "no such ref"}) == \
        "failed: no such ref"


def test_commit_status_states() -> None:
    assert preview_poster.state_of(record([], "running")) == "pending"
    assert preview_poster.state_of(record([unit("a", "c")])) == "success"
    assert preview_poster.state_of(record([unit("a", "c", "refused")])) == "failure"
    assert preview_poster.state_of(record([unit("a", "c", "failed")])) == "failure"
    assert preview_poster.state_of(record([], "failed")) == "error"


def _github(action: str, **changes: Any) -> bytes:
    body: dict[str, Any] = {"action": action, "number": 5, "pull_request": {
        "number": 5, "html_url": "https://github.com/o/r/pull/5",
        "head": {"sha": SHA}, "base": {"ref": "main"}},
        "repository": {"full_name": "o/r", "clone_url": "https://github.com/o/r.git"}}
    body.update(changes)
    return json.dumps(body).encode()


def test_pull_request_payloads() -> None:
    pull, why = pulls.parse("github", _github("synchronize"))
    assert why == "" and pull is not None
    assert pull.origin() == {"provider": "github", "repository": "o/r", "number": 5,
                             "head_sha": SHA, "url": "https://github.com/o/r/pull/5"}
    assert pull.base == "main"
    assert pulls.parse("github", _github("closed"))[0] is None
    sneaky = json.loads(_github("opened"))
    sneaky["pull_request"]["html_url"] = "javascript:alert(1)"
    pull, _ = pulls.parse("github", json.dumps(sneaky).encode())
    assert pull is not None and pull.url == ""          # never a link on the dashboard
    assert "missing" in pulls.parse("github", _github("opened", pull_request={"number": 5}))[1]
    assert pulls.parse("github", b"[]")[0] is None and pulls.parse("github", b"{")[0] is None
    gl = {"object_attributes": {"iid": 2, "action": "update", "oldrev": "c" * 40,
                                "target_branch": "main", "last_commit": {"id": SHA}},
          "project": {"path_with_namespace": "g/p", "git_ssh_url": "git@gl.example:g/p.git"}}
    pull, _ = pulls.parse("gitlab", json.dumps(gl).encode())
    assert pull is not None and pull.number == 2 and pull.repository == "g/p"
    del gl["object_attributes"]["oldrev"]
    assert "no oldrev" in pulls.parse("gitlab", json.dumps(gl).encode())[1]


def test_the_pull_request_must_be_the_sources_repository() -> None:
    pull, _ = pulls.parse("github", _github("opened"))
    assert pull is not None
    assert pulls.same_repository("https://github.com/O/R.git", pull) == ""
    assert pulls.same_repository("git@github.com:o/r", pull) == ""
    assert pulls.same_repository("ssh://git@github.com/o/r.git", pull) == ""
    assert "not the source's repository" in pulls.same_repository("https://github.com/o/x", pull)
    assert "not the source's" in pulls.same_repository("https://gitlab.com/o/r.git", pull)


BASE = """\
sources:
  - {name: git, url: https://git.example.com/org/gitops.git, branch: main}
clusters:
  - {name: a}
applications:
  - {name: web, source: git, path: app, clusters: {names: [a]}}
notifications:
  routes:
"""


def _spec(tmp_path: Path, routes: str) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(BASE + textwrap.indent(textwrap.dedent(routes), "    "))
    return str(path)


def test_a_gitlab_route(tmp_path: Path) -> None:
    fleet = load(_spec(tmp_path, "- {name: gl, provider: gitlab, project: group/sub/fleet, "
                                 "tokenEnv: GL_TOKEN}\n"))
    (route,) = fleet.notifications.routes
    assert (route.provider, route.api, route.repository, route.token_env) == \
        ("gitlab", "https://gitlab.com/api/v4", "group/sub/fleet", "GL_TOKEN")
    numbered = load(_spec(tmp_path, "- {name: gl, provider: gitlab, project: '42', "
                                    "api: 'https://gl.example/api/v4', tokenEnv: T}\n"))
    assert numbered.notifications.routes[0].repository == "42"


@pytest.mark.parametrize("route, wanted", [
    ("- {name: gl, provider: gitlab, tokenEnv: T}", "fleet.yaml:9: notifications.routes[0]."
                                                   "project: is required for provider gitlab"),
    ("- {name: gl, provider: gitlab, project: g/p}", "tokenEnv: is required"),
    ("- {name: gl, provider: gitlab, project: g/p, tokenEnv: T, repository: o/r}",
     "repository: does not apply to provider gitlab"),
    ("- {name: gl, provider: gitlab, project: 'a b', tokenEnv: T}", "project: must be"),
    ("- {name: gl, provider: gitlab, project: g/p, token: abc}", "inline secrets"),
    ("- {name: gh, provider: github, repository: o/r, tokenEnv: T, project: g/p}",
     "project: does not apply to provider github"),
])
def test_gitlab_route_mistakes_are_named_with_their_line(tmp_path: Path, route: str,
                                                         wanted: str) -> None:
    with pytest.raises(SpecError) as err:
        load(_spec(tmp_path, route + "\n"))
    assert any(wanted in p for p in err.value.problems), err.value.problems


def test_the_server_role_reaches_the_preview_keys() -> None:
    role = server_role()
    for pattern in ("~fleetsync:preview-posts", "~fleetsync:preview-posting:*",
                    "~fleetsync:preview-pr:*:*:*"):
        assert pattern in role.keys
    assert preview_poster.POSTS == "fleetsync:preview-posts"
    assert preview_poster.pr_key({"provider": "github", "repository": "o/r", "number": 1}) == \
        "fleetsync:preview-pr:github:o/r:1"
