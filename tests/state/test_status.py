"""Status and history of sync units in a real Redis."""

from __future__ import annotations

from shared.state import keys
from shared.state.status import StatusStore, UnitStatus


def test_status_round_trip_and_listing(redis_client):
    store = StatusStore(redis_client.__class__.from_url(_url(redis_client), decode_responses=True))
    store.set_status(UnitStatus("web", "prod", phase="Ready", revision="abc", message="2 created", last_synced_at="t", reason="", counts={"created": 2}))
    store.set_status(UnitStatus("api", "prod", phase="Failed", revision="abc", message="bad", last_synced_at="t", reason="RenderFailed"))
    got = store.get_status("web", "prod")
    assert got.phase == "Ready" and got.counts == {"created": 2}
    assert [(s.cluster, s.app) for s in store.all_statuses()] == [("prod", "api"), ("prod", "web")]
    assert store.get_status("nope", "prod").phase == "Unknown"


def test_history_is_capped_newest_first(redis_client):
    store = StatusStore(redis_client.__class__.from_url(_url(redis_client), decode_responses=True),
                        history_size=3)
    for i in range(5):
        store.add_history("web", "prod", {"revision": str(i)})
    assert [e["revision"] for e in store.history("web", "prod")] == ["4", "3", "2"]


def _url(client) -> str:
    kw = client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def test_one_fetch_per_source_per_interval_fleet_wide(redis_client):
    import time

    store = StatusStore(redis_client.__class__.from_url(_url(redis_client), decode_responses=True))
    claims = [store.claim_fetch("platform", interval=0.3) for _ in range(20)]
    assert claims.count(True) == 1
    time.sleep(0.35)
    assert store.claim_fetch("platform", interval=0.3) is True
    store.set_source_revision("platform", "a" * 40, 123.0)
    assert store.source_revision("platform") == ("a" * 40, 123.0)


def test_a_clusters_units_come_from_its_own_index(redis_client):
    redis_client = redis_client.__class__.from_url(_url(redis_client), decode_responses=True)
    store = StatusStore(redis_client)
    for app, cluster in (("web", "a"), ("db", "a"), ("web", "b")):
        store.set_status(UnitStatus(app=app, cluster=cluster, phase="Ready"))
    assert redis_client.smembers(keys.cluster_units("a")) == {"a/web", "a/db"}
    assert [s.app for s in store.all_statuses("a")] == ["db", "web"]
    assert [s.app for s in store.all_statuses("b")] == ["web"]
    store.forget("db", "a")
    assert [s.app for s in store.all_statuses("a")] == ["web"]
    assert [(s.app, s.cluster) for s in store.all_statuses()] == [("web", "a"), ("web", "b")]


def test_units_written_before_clusters_had_an_index_are_indexed_once(redis_client):
    """Status written by an earlier version: only the fleet-wide set names the units."""
    redis_client = redis_client.__class__.from_url(_url(redis_client), decode_responses=True)
    store = StatusStore(redis_client)
    for unit in ("a/web", "a/db", "b/web"):
        redis_client.hset(keys.status(unit), mapping={"phase": "Ready"})
        redis_client.sadd(keys.UNITS, unit)
    store.set_status(UnitStatus(app="new", cluster="a", phase="Ready"))   # after the upgrade
    assert [s.app for s in store.all_statuses("a")] == ["db", "new", "web"]
    assert redis_client.smembers(keys.cluster_units("a")) == {"a/web", "a/db", "a/new"}
    assert not redis_client.exists(keys.cluster_units("b"))       # one cluster at a time
    assert [s.app for s in store.all_statuses("b")] == ["web"]
    redis_client.sadd(keys.UNITS, "b/late")        # not indexed: the migration ran once
    assert [s.app for s in store.all_statuses("b")] == ["web"]
