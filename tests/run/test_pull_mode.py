"""Pull mode: a worker bound to one cluster's apply queue applies that cluster's work only."""

from __future__ import annotations

import pytest
import redis

from tests.conftest import new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def test_worker_on_one_clusters_apply_queue(dev_fleet, redis_url, tmp_path):
    stack = Stack(tmp_path, new_redis_db(redis_url), dev_fleet.clusters,
                  env_extra={"FLEETSYNC_QUEUE_PER_CLUSTER": "true"})
    stack.write_spec(["dev-1", "dev-2"])
    try:
        stack.start_worker("central", "--queues", "reconcile,fetch,render")
        stack.start_worker("inside-dev-2", "--cluster", "dev-2")
        from scheduler.client import Client
        from shared.settings import Settings

        client = Client(Settings(redis_url=stack.redis_url))
        client.sync(stack.app)
        rev = stack.repo.head()
        stack.wait("dev-2 applied by its own worker", lambda: stack.ready_at("dev-2", rev))
        broker = redis.Redis.from_url(stack.redis_url)
        stack.wait("dev-1's apply waiting in apply.dev-1", lambda: broker.llen("apply.dev-1") == 1)
        assert stack.status("dev-1")["phase"] == "Unknown"

        stack.start_worker("inside-dev-1", "--cluster", "dev-1")
        stack.wait("dev-1 applied once its worker runs", lambda: stack.ready_at("dev-1", rev))
        assert broker.llen("apply.dev-1") == 0
        client.close()
    finally:
        stack.stop()


def test_pull_worker_under_its_own_redis_acl_user(dev_fleet, tmp_path):
    """The same flow on a Redis with `fleetsync redis-acl` users: the central worker as
    fleetsync-worker, dev-2's worker as fleetsync-pull-dev-2; nothing it needs is refused."""
    from tests.support import acl_redis

    (tmp_path / "redis").mkdir()
    server = acl_redis.start(tmp_path / "redis", list(dev_fleet.clusters), ["dev-2"])
    stack = Stack(tmp_path, server.url(acl_redis.ADMIN), dev_fleet.clusters,
                  env_extra={"FLEETSYNC_QUEUE_PER_CLUSTER": "true"})
    stack.write_spec(["dev-1", "dev-2"])
    try:
        stack.start_worker("central", "--queues", "reconcile,fetch,render,apply.dev-1",
                           FLEETSYNC_REDIS_URL=server.url("fleetsync-worker"))
        stack.start_worker("inside-dev-2", "--cluster", "dev-2",
                           FLEETSYNC_REDIS_URL=server.url("fleetsync-pull-dev-2"))
        from scheduler.client import Client
        from shared.settings import Settings

        client = Client(Settings(redis_url=stack.redis_url))
        client.sync(stack.app)
        rev = stack.repo.head()
        refused = lambda: server.denials("fleetsync-pull-dev-2")  # noqa: E731
        stack.wait("dev-2 applied by its own worker",
                   lambda: stack.ready_at("dev-2", rev) or bool(refused()))
        assert refused() == []
        stack.wait("dev-1 applied centrally", lambda: stack.ready_at("dev-1", rev))
        assert server.denials("fleetsync-worker") == []
        client.close()
    finally:
        stack.stop()
        server.stop()
