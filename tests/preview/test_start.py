"""``scheduler.previews.start``: the record first, then ``fleetsync.preview`` by name."""

from __future__ import annotations

import pytest
import redis

from scheduler.previews import PreviewRequestError, start
from shared import tasks_api
from shared.celery_app import make_app
from shared.settings import Settings
from shared.state import previews


@pytest.fixture()
def parts(isolated_redis_url: str):
    client = redis.Redis.from_url(isolated_redis_url, decode_responses=True)
    app = make_app(Settings(redis_url=isolated_redis_url))
    yield app, client
    app.close()
    client.close()


def test_start_records_then_enqueues_by_name_with_names_only(parts) -> None:
    app, client = parts
    pid = start(app, client, source="fleet-repo", ref="feature/x", base="main",
                apps=["web"], requested_by="alice")
    record = previews.load(client, pid)
    assert record is not None
    assert (record["source"], record["ref"], record["base"], record["state"]) == \
        ("fleet-repo", "feature/x", "main", "running")
    assert record["apps"] == ["web"] and record["requested_by"] == "alice"
    queued = client.lrange("reconcile", 0, -1)
    assert len(queued) == 1
    import json
    message = json.loads(queued[0])
    assert message["headers"]["task"] == tasks_api.PREVIEW
    assert message["headers"]["argsrepr"] == f"preview {pid} of fleet-repo@feature/x"


def test_a_pinned_revision_is_the_candidate(parts) -> None:
    app, client = parts
    sha = "a" * 40
    pid = start(app, client, source="fleet-repo", revision=sha)
    record = previews.load(client, pid)
    assert record and record["revision"] == sha and record["ref"] == sha


@pytest.mark.parametrize("kwargs, field", [
    ({"source": "fleet-repo"}, "ref"),
    ({"source": "fleet-repo", "ref": "--upload-pack=x"}, "ref"),
    ({"source": "fleet-repo", "ref": "main", "base": "a..b"}, "base"),
    ({"source": "fleet-repo", "revision": "nothex"}, "revision"),
    ({"source": "../etc", "ref": "main"}, "source"),
])
def test_hostile_requests_are_refused_naming_the_field(parts, kwargs, field) -> None:
    app, client = parts
    with pytest.raises(PreviewRequestError, match=field):
        start(app, client, **kwargs)
    assert client.zcard("fleetsync:previews") == 0
