"""Status and history of sync units in a real Redis."""

from __future__ import annotations

from shared.status import StatusStore, UnitStatus


def test_status_round_trip_and_listing(redis_client):
    store = StatusStore(redis_client.__class__.from_url(_url(redis_client), decode_responses=True))
    store.set_status(UnitStatus("web", "prod", "Ready", "abc", "2 created", "t", "", {"created": 2}))
    store.set_status(UnitStatus("api", "prod", "Failed", "abc", "bad", "t", "RenderFailed"))
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
