"""The worker keeps a delivered message in kombu's ``unacked`` bookkeeping without a
transaction (``workers/broker.py``): each delivery and acknowledgement is its two
commands, no ``MULTI``/``EXEC`` around them, and a task still runs once and is
acknowledged (nothing is left in ``unacked``)."""

from __future__ import annotations

import redis

from workers import broker

TASKS = 20


def _calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_deliveries_and_acks_need_no_transaction(celery_app, celery_worker, redis_url):
    client = redis.Redis.from_url(redis_url)
    assert celery_app.send_task("fleetsync.ping").get(timeout=30)["pong"]
    before = _calls(client)
    results = [celery_app.send_task("fleetsync.ping", args=[{"n": i}]) for i in range(TASKS)]
    for result in results:
        assert result.get(timeout=60)["pong"] is True
    after = _calls(client)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    # with kombu's transport: two transactions per task (delivery, ack), plus the result
    # backend's own; now only the result backend's
    assert delta.get("multi", 0) <= TASKS + 2, delta
    assert delta.get("zadd", 0) >= TASKS and delta.get("zrem", 0) >= TASKS, delta
    assert client.hlen("unacked") == 0 and client.zcard("unacked_index") == 0


def test_the_worker_app_uses_these_transports_for_every_redis_url():
    from kombu import transport
    from kombu.transport import resolve_transport

    kept = dict(transport.TRANSPORT_ALIASES)
    try:
        broker.use()
        assert resolve_transport("redis") is broker.Transport
        assert resolve_transport("rediss") is broker.Transport
        assert resolve_transport("sentinel") is broker.SentinelTransport
    finally:
        transport.TRANSPORT_ALIASES.clear()
        transport.TRANSPORT_ALIASES.update(kept)
    assert broker.Transport.Channel.QoS is broker.QoS
    assert broker.SentinelTransport.Channel.QoS is broker.QoS
