"""The server's Redis ACL user and previews, against a real redis-server that knows only the
generated users: as ``fleetsync-server`` a preview is created, started on the broker, read, and
its posting kept; a unit's status stays out of reach."""

from __future__ import annotations

import json
from typing import Iterator

import pytest
import redis
from redis.exceptions import NoPermissionError

from scheduler import previews as runs
from scheduler.server.preview_poster import POSTS, claim_key, pr_key, want
from shared import tasks_api
from shared.celery_app import make_app
from shared.settings import Settings
from shared.state import keys, previews
from tests.support import acl_redis
from tests.support.broker import _call

ORIGIN = {"provider": "github", "repository": "org/fleet", "number": 1, "head_sha": "a" * 40,
          "url": ""}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[acl_redis.AclRedis]:
    srv = acl_redis.start(tmp_path_factory.mktemp("acl-previews"), ["prod"], [])
    yield srv
    srv.stop()


def test_the_server_user_starts_reads_and_posts_previews(server: acl_redis.AclRedis) -> None:
    url = server.url("fleetsync-server")
    client = redis.Redis.from_url(url, decode_responses=True)
    app = make_app(Settings(redis_url=url))     # its first publish declares the binding
    pid = runs.start(app, client, source="git", revision="a" * 40, base="main", origin=ORIGIN)
    want(client, pid, ORIGIN, f"https://fleetsync.example.com/previews/{pid}")
    assert client.set(claim_key(pid), "1", nx=True, px=1000)
    client.hset(pr_key(ORIGIN), "comment", 1001)
    record = previews.load(client, pid)
    assert record is not None and record["origin"] == ORIGIN
    assert [p["id"] for p in previews.recent(client)] == [pid]
    assert client.hexists(POSTS, pid)
    admin = server.client(acl_redis.ADMIN)
    sent = [_call(json.loads(raw)) for raw in admin.lrange("reconcile", 0, -1)]
    assert (tasks_api.PREVIEW, [pid, "git", "a" * 40]) in [(n, a) for n, a, _ in sent]
    with pytest.raises(NoPermissionError):
        client.hset(keys.status(keys.unit_id("web", "prod")), "phase", "Ready")
    with pytest.raises(NoPermissionError):
        client.sadd("_kombu.binding.apply", "forged")
