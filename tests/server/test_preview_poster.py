"""The forge poster against the real Redis and a loopback GitHub API: what it does when the forge
fails, when the comment's id was lost or the comment deleted, when the token is not set, and when
an older preview finishes after a newer one. The poster runs in this process (``pass_once``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis

from scheduler.server.preview_poster import POSTS, Poster, pr_key, want
from shared.spec.load import load
from shared.state import previews
from tests.support.forge_api import ForgeApi

TOKEN = "gh-" + "p" * 37
SHA = "d" * 40


@pytest.fixture()
def forge() -> Iterator[ForgeApi]:
    api = ForgeApi(TOKEN)
    yield api
    api.close()


@pytest.fixture()
def client(redis_url: str) -> Any:
    from tests.conftest import new_redis_db

    return redis.Redis.from_url(new_redis_db(redis_url), decode_responses=True)


def poster(client: Any, forge: ForgeApi, tmp_path: Path, env: dict[str, str] | None = None
           ) -> Poster:
    (tmp_path / "fleet.yaml").write_text(f"""sources:
  - {{name: git, url: https://github.com/org/fleet.git, branch: main}}
clusters:
  - {{name: prod, kubeconfig: /nonexistent}}
applications:
  - {{name: web, source: git, path: apps/web, clusters: {{names: [prod]}}}}
notifications:
  routes:
    - {{name: gh, provider: github, api: "{forge.url}", repository: org/fleet, tokenEnv: GH}}
""")
    fleet = load(str(tmp_path / "fleet.yaml"))
    return Poster(client, lambda: fleet, {"GH": TOKEN} if env is None else env)


ORIGIN = {"provider": "github", "repository": "org/fleet", "number": 4, "head_sha": SHA,
          "url": "https://github.com/org/fleet/pull/4"}


def started(client: Any, origin: dict[str, Any] = ORIGIN) -> str:
    pid = previews.create(client, source="git", ref=origin["head_sha"], origin=origin)["id"]
    want(client, pid, origin, f"https://fleetsync.example.com/previews/{pid}")
    return pid


def done(client: Any, pid: str, outcome: str = "changed") -> None:
    previews.set_total(client, pid, 1)
    previews.add_units(client, pid, [{"app": "web", "cluster": "prod", "base_revision": "",
                                      "revision": SHA, "outcome": outcome, "message": "",
                                      "objects": []}])
    previews.update(client, pid, state="done")


def until(what: str, post: Poster, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        post.pass_once()
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached in {timeout}s")


def test_a_failing_forge_is_tried_again_after_back_off(client, forge, tmp_path) -> None:
    post = poster(client, forge, tmp_path)
    pid = started(client)
    forge.fail("POST", "/statuses/", 502, 503)
    post.pass_once()
    assert post.attempts[pid] == 1 and forge.statuses() == []
    post.pass_once()                                # backing off: nothing sent
    assert len(forge.got("POST", "/statuses/")) == 1
    until("the pending status", post, lambda: len(forge.statuses()) == 1)
    assert [c.status for c in forge.got("POST", "/statuses/")] == [502, 503, 201]
    done(client, pid)
    until("the comment", post, lambda: not client.hexists(POSTS, pid))
    assert [s["state"] for s in forge.statuses()] == ["pending", "success"]


def test_a_lost_comment_id_finds_the_comment_by_its_marker(client, forge, tmp_path) -> None:
    post = poster(client, forge, tmp_path)
    first = started(client)
    done(client, first)
    until("the first comment", post, lambda: len(forge.comments) == 1)
    (cid,) = forge.comments
    client.delete(pr_key(ORIGIN))                   # Redis wiped
    second = started(client)
    done(client, second, "refused")
    until("the second posting", post, lambda: not client.hexists(POSTS, second))
    assert [c.path for c in forge.got("PATCH")] == [f"/repos/org/fleet/issues/comments/{cid}"]
    assert len(forge.got("POST", "/comments")) == 1
    assert client.hget(pr_key(ORIGIN), "comment") == str(cid)


def test_a_deleted_comment_is_made_again_once(client, forge, tmp_path) -> None:
    post = poster(client, forge, tmp_path)
    first = started(client)
    done(client, first)
    until("the first comment", post, lambda: len(forge.comments) == 1)
    forge.comments.clear()                          # someone deleted it
    second = started(client)
    done(client, second)
    until("the second posting", post, lambda: not client.hexists(POSTS, second))
    assert [c.status for c in forge.got("PATCH")] == [404]
    assert len(forge.got("POST", "/comments")) == 2 and len(forge.comments) == 1
    assert client.hget(pr_key(ORIGIN), "comment") == str(next(iter(forge.comments)))


def test_an_unset_token_drops_the_posting_and_sends_nothing(client, forge, tmp_path) -> None:
    post = poster(client, forge, tmp_path, env={})
    pid = started(client)
    post.pass_once()
    assert not client.hexists(POSTS, pid) and forge.calls == []


def test_an_older_preview_finishing_late_leaves_the_comment_to_the_newer(client, forge,
                                                                         tmp_path) -> None:
    post = poster(client, forge, tmp_path)
    old = started(client)
    new = started(client, {**ORIGIN, "head_sha": "e" * 40})
    done(client, new)
    until("the newer's comment", post, lambda: not client.hexists(POSTS, new))
    body = next(iter(forge.comments.values()))["body"]
    done(client, old, "refused")
    until("the older's status", post, lambda: not client.hexists(POSTS, old))
    assert next(iter(forge.comments.values()))["body"] == body and not forge.got("PATCH")
    assert forge.got("POST", f"/statuses/{SHA}")[-1].body["state"] == "failure"


def test_a_failed_preview_is_an_error_status_of_at_most_140_characters(client, forge,
                                                                        tmp_path) -> None:
    post = poster(client, forge, tmp_path)
    pid = started(client)
    previews.update(client, pid, state="failed", message="fetch of feature: " + "x" * 300)
    until("the posting", post, lambda: not client.hexists(POSTS, pid))
    final = forge.statuses()[-1]
    assert final["state"] == "error" and len(final["description"]) == 140
    assert final["description"].startswith("failed: fetch of feature: xxx")
    assert final["description"].endswith("...")
