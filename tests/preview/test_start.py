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


def test_flower_shows_a_preview_and_its_parts_with_source_and_ref() -> None:
    assert tasks_api.describe(tasks_api.PREVIEW, ["3f2a9c1b0d4e", "platform", "feature/x"]) == \
        "preview 3f2a9c1b0d4e of platform@feature/x"
    assert tasks_api.describe(tasks_api.PREVIEW_CLUSTER, ["3f2a9c1b0d4e", "edge-1"],
                              {"source": "platform", "ref": "feature/x", "units": ["web"]}) == \
        "preview 3f2a9c1b0d4e of platform@feature/x cluster edge-1"
    assert tasks_api.route(tasks_api.PREVIEW, ["x", "s", "r"]) == "reconcile"
    assert tasks_api.route(tasks_api.PREVIEW_CLUSTER, ["x", "edge-1"],
                           queue_per_cluster=True) == "apply.edge-1"


def test_previews_are_sent_from_the_cli_and_server_and_never_their_parts() -> None:
    from scheduler.app import allowed

    for process in ("server", "beat", ""):
        assert tasks_api.PREVIEW in allowed(process)
        assert tasks_api.PREVIEW_CLUSTER not in allowed(process)
    assert tasks_api.PREVIEW not in allowed("flower")
    assert tasks_api.PREVIEW in allowed("flower", tasks_api.PREVIEW)
    assert tasks_api.PREVIEW_CLUSTER not in allowed("flower", tasks_api.PREVIEW_CLUSTER)


def test_the_text_report_lists_what_changes_per_application_and_cluster() -> None:
    from scheduler.commands.preview import selector_of, text

    units = [
        {"app": "web", "cluster": "edge-1", "outcome": "changed", "message": "1 to update",
         "objects": [{"apiVersion": "v1", "kind": "Secret", "namespace": "web", "name": "db",
                      "action": "update", "fields": ["data.password"], "message": ""}]},
        {"app": "web", "cluster": "edge-2", "outcome": "unchanged", "message": "", "objects": []},
        {"app": "web", "cluster": "edge-3", "outcome": "refused", "message": "1 object(s) refused",
         "objects": [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default",
                      "name": "stray", "action": "refused", "fields": [],
                      "message": "namespace default is not in allowedNamespaces ['web']"}]},
    ]
    out = text({"source": "git", "ref": "feature", "revision": "a" * 40,
                "base_revision": "b" * 40, "units": units})
    assert out.splitlines() == [
        f"preview of git@feature ({'a' * 12}) against {'b' * 12}",
        "web:",
        "  edge-1: changed: 1 to update",
        "    ~ Secret/web/db (data.password)",
        "  edge-3: refused: 1 object(s) refused",
        "    ! ConfigMap/default/stray: namespace default is not in allowedNamespaces ['web']",
        "3 units: 1 change (1 apps, 1 clusters), 1 refused, 0 failed, 1 unchanged"]
    assert selector_of("env=prod, region=eu") == {"env": "prod", "region": "eu"}
    assert selector_of("") is None
    with pytest.raises(Exception, match="KEY=VALUE"):
        selector_of("env")
