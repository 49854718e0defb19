"""Redis ACL users per role and per pull cluster, checked against a real redis-server.

Cluster A's credential consumes ``apply.A`` and writes A's state; it can
neither read nor enqueue to B's queue, nor read B's render memo or write B's
status, nor publish to the stage queues other than ``render``; a real Celery
worker running as A's user consumes and acknowledges its own queue. What kombu's
key layout shares between all queues (``scheduler.redis_acl.SHARED``) is
asserted here as what it is, so that a change to it shows up.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis
from redis.exceptions import NoPermissionError

from scheduler import redis_acl
from shared.state import keys
from tests.support import acl_redis
from tests.conftest import ROOT, start_worker, stop_worker

CLUSTERS = ["a", "ab", "b"]          # "ab" shares a prefix with "a": its queue stays apart
PULL = ["a", "b"]
A, B = "fleetsync-pull-a", "fleetsync-pull-b"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[acl_redis.AclRedis]:
    srv = acl_redis.start(tmp_path_factory.mktemp("acl-redis"), CLUSTERS, PULL)
    yield srv
    srv.stop()


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except NoPermissionError:
        return True
    return False


def wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# --- the generator, pure ------------------------------------------------------------

def test_one_user_per_role_and_pull_cluster() -> None:
    users = [r.user for r in redis_acl.roles(CLUSTERS, PULL)]
    assert users == ["fleetsync-worker", "fleetsync-beat", "fleetsync-flower", "fleetsync-cli",
                     "fleetsync-server", A, B]
    text = redis_acl.aclfile([(r, "pw") for r in redis_acl.roles(CLUSTERS, PULL)])
    assert text.startswith("user default off ")
    assert ">pw" not in text and "pw" not in text.split("#", 1)[1][:64]   # hashed


def test_unknown_pull_cluster_is_refused_by_name() -> None:
    with pytest.raises(Exception, match="no cluster named 'c'.*clusters: a, ab, b"):
        redis_acl.roles(CLUSTERS, ["c"])


def test_cli_writes_aclfile_and_env_files(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    spec.write_text("sources:\n  - {name: s, url: 'https://git.example.com/x.git', branch: main}\n"
                    "clusters:\n  - {name: hub, kubeconfig: /k/hub.yaml}\n  - {name: edge-1}\n"
                    "applications:\n  - {name: web, source: s, path: web, "
                    "clusters: {names: [hub, edge-1]}}\n")
    out = tmp_path / "acl"
    proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "redis-acl", "-f", str(spec),
                           "--redis-url", "rediss://redis.example.com:6380/2?ssl_cert_reqs=required",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    acl = (out / "users.acl").read_text()
    assert "user fleetsync-pull-edge-1 on #" in acl and "~apply.edge-1 " in acl
    assert "&/2.celeryev/*" in acl                       # the database's fanout channels
    env = (out / "fleetsync-pull-edge-1.env")
    assert env.stat().st_mode & 0o777 == 0o600
    assert env.read_text().splitlines()[1].startswith(
        "FLEETSYNC_REDIS_URL=rediss://fleetsync-pull-edge-1:")
    bad = subprocess.run([sys.executable, "-m", "scheduler.cli", "redis-acl", "-f", str(spec),
                          "--pull", "edge-2"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"{spec}: --pull: no cluster named 'edge-2'" in bad.stderr


# --- a real Redis enforces them ---------------------------------------------------------

def test_pull_user_consumes_its_queue_only(server: acl_redis.AclRedis) -> None:
    admin, a = server.client(acl_redis.ADMIN), server.client(A)
    admin.lpush("apply.b", "b's task")
    admin.lpush("apply.ab", "ab's task")
    a.lpush("apply.a", "x")
    assert a.brpop(["apply.a"], timeout=1) == (b"apply.a", b"x")
    assert a.rpop("apply.a\x06\x163") is None               # its priority lists too
    for name in ("apply.b", "apply.ab"):
        assert refused(lambda: a.rpop(name)), name
        assert refused(lambda: a.llen(name)), name
        assert refused(lambda: a.lpush(name, "forged")), name
        assert refused(lambda: a.brpop([name], timeout=1)), name
    for queue in ("reconcile", "fetch", "apply"):
        assert refused(lambda: a.lpush(queue, "forged")), queue
    # render is write-only for it: a run whose render entry expired goes back there
    a.lpush("render", "x")
    assert refused(lambda: a.rpop("render"))
    assert admin.llen("apply.b") == 1 and admin.llen("apply.ab") == 1


def test_pull_user_state_is_its_clusters(server: acl_redis.AclRedis) -> None:
    admin, a = server.client(acl_redis.ADMIN), server.client(A)
    b_memo = keys.rendered(keys.unit_id("web", "b"), "rev", "spec")
    admin.set(b_memo, "digest-of-b")
    assert refused(lambda: a.get(b_memo))
    assert refused(lambda: a.hset(keys.status(keys.unit_id("web", "b")), "phase", "Ready"))
    assert refused(lambda: a.hgetall(keys.status(keys.unit_id("web", "b"))))
    assert refused(lambda: a.lpush(keys.history(keys.unit_id("web", "b")), "{}"))
    assert refused(lambda: a.set(keys.lock(keys.unit_id("web", "b")), "mine"))
    assert refused(lambda: a.hset(keys.cluster_down("b"), "next_at", "0"))
    a.hset(keys.status(keys.unit_id("web", "a")), "phase", "Ready")
    a.set(keys.lock(keys.unit_id("web", "a")), "mine", px=1000)
    assert refused(lambda: a.keys("*")) and refused(lambda: a.scan(0))
    assert refused(lambda: a.flushdb()) and refused(lambda: a.config_get("*"))
    # what a pull worker's metrics read: its own cluster's units, never all of them
    from shared.state.status import StatusStore
    admin.sadd(keys.UNITS, keys.unit_id("web", "a"), keys.unit_id("web", "b"))
    store = StatusStore(redis.Redis.from_url(server.url(A), decode_responses=True))
    assert [(s.app, s.cluster, s.phase) for s in store.all_statuses("a")] == [("web", "a", "Ready")]
    assert refused(lambda: store.all_statuses())


def test_a_pull_user_reaches_no_other_clusters_runs(server: acl_redis.AclRedis) -> None:
    """Cluster a's user neither reads nor changes anything of b's runs: not the in-flight
    messages (run ids, render keys) b's workers or the central ones hold, not b's run
    record, wherever it is named; marking b's run done does not make the central stage
    drop it. Its own runs go through the whole protocol as its user."""
    from shared.protocol import Phase, Verdict
    from shared.state.runs import Outcome, Runs
    from shared.tasks_api import unacked_keys

    admin, a = server.client(acl_redis.ADMIN), server.client(A)
    for unacked in ("unacked", unacked_keys("b")["unacked_key"]):
        admin.hset(unacked, "tag-of-b", "b's in-flight message")
        assert refused(lambda: a.hget(unacked, "tag-of-b")), unacked
        assert refused(lambda: a.hdel(unacked, "tag-of-b")), unacked
        assert refused(lambda: a.hset(unacked, "forged", "{}")), unacked
    central = Runs(redis.Redis.from_url(server.url("fleetsync-worker"), decode_responses=True))
    unit_b = keys.unit_id("runs-app", "b")
    run_b = central.request("runs-app", "b", trigger="beat", revision="rev").other
    for record in (f"fleetsync:run:{run_b}", f"fleetsync:run:{unit_b}:{run_b}"):
        assert refused(lambda: a.hgetall(record)), record
        assert refused(lambda: a.hset(record, "state", "done")), record
    assert central.touch(unit_b, run_b)[0].verdict == Verdict.GO       # not dropped
    assert central.request("runs-app", "b", trigger="beat").other == run_b  # still the one run
    # its own cluster's runs, start to end, as its own user
    own = Runs(redis.Redis.from_url(server.url(A), decode_responses=True))
    unit_a = keys.unit_id("runs-app", "a")
    run_a = own.request("runs-app", "a", trigger="beat", revision="rev").other
    assert own.begin(unit_a, run_a, "o1", "a").step.verdict == Verdict.STARTED
    own.end(unit_a, run_a, "o1", Outcome(Phase.READY, "1 unchanged", "rev"), status=None,
            entry=None)
    assert own.run(unit_a, run_a)["state"] == "done"
    a.hset(unacked_keys("a")["unacked_key"], "tag-of-a", "a's in-flight message")
    assert a.hdel(unacked_keys("a")["unacked_key"], "tag-of-a") == 1


def test_what_kombus_layout_leaves_shared(server: acl_redis.AclRedis) -> None:
    """Asserted as it is today; deploy/kubernetes/README.md says what it leaves."""
    admin, a = server.client(acl_redis.ADMIN), server.client(A)
    own, other = keys.RENDER_PREFIX + "a/" + "0" * 64, keys.RENDER_PREFIX + "b/" + "0" * 64
    admin.set(own, "sealed render of a")
    admin.set(other, "sealed render of b")
    assert a.get(own) == b"sealed render of a"              # its cluster's final render
    assert refused(lambda: a.set(own, "forged"))            # read only
    assert refused(lambda: a.get(other))                     # another cluster's: refused
    assert refused(lambda: a.get(keys.RENDER_PREFIX + "0" * 64))   # the shared raw builds
    admin.set("celery-task-meta-0123", "a result")          # by task id, not listable
    assert a.get("celery-task-meta-0123") == b"a result"


def test_cli_user_only_reads(server: acl_redis.AclRedis) -> None:
    admin, cli = server.client(acl_redis.ADMIN), server.client("fleetsync-cli")
    status = keys.status(keys.unit_id("web", "b"))
    admin.hset(status, "phase", "Ready")
    assert cli.hgetall(status) == {b"phase": b"Ready"}
    assert refused(lambda: cli.hset(status, "phase", "Failed"))
    assert refused(lambda: cli.lpush("reconcile", "x"))
    assert refused(lambda: cli.get(keys.RENDER_PREFIX + "0" * 64))


def test_real_worker_as_the_pull_user_serves_its_queue(server: acl_redis.AclRedis) -> None:
    """A Celery worker bound to apply.a, connected as a's user, takes, acks and answers."""
    from shared.celery_app import make_app, send
    from shared.settings import Settings

    db = 0
    central = make_app(Settings(redis_url=server.url("fleetsync-worker", db),
                                queue_per_cluster=True))
    admin = server.client(acl_redis.ADMIN, db)
    admin.acl_log_reset()                # the refusals the other tests asked for
    proc = start_worker(server.url(A, db), "pull-a", queues="apply.a", concurrency=1,
                        FLEETSYNC_QUEUE_PER_CLUSTER="true", FLEETSYNC_WORKER_CLUSTER="a")
    try:
        # sent from outside the workers (unsigned), so the worker refuses to run it;
        # what counts here is that it took it from apply.a and acknowledged it
        send(central, "fleetsync.apply", ["web", "a", "0" * 64], {"run_id": "r-1"})
        wait("apply.a taken", lambda: admin.llen("apply.a") == 0, timeout=90)
        # held in a's own unacked hash (the shared one is refused to its user) and acked
        wait("the delivery acknowledged", lambda: not admin.hlen("unacked.apply.a"))
        assert proc.poll() is None, "the worker died"
        assert server.denials(A) == [], server.denials(A)
    finally:
        stop_worker(proc)


def test_server_user_records_deliveries_and_sends_fetches_but_writes_no_state(
        server: acl_redis.AclRedis) -> None:
    from shared.state.status import delivery_key, fetch_wanted_key

    admin = server.client(acl_redis.ADMIN)
    admin.hset(keys.status(keys.unit_id("web", "a")), "phase", "Ready")
    srv = server.client("fleetsync-server")
    assert srv.hget(keys.status(keys.unit_id("web", "a")), "phase") == b"Ready"
    srv.set(fetch_wanted_key("git"), "1")
    srv.set(delivery_key("git", "abc-123"), "1")
    srv.lpush("fetch", "a message")
    assert refused(lambda: srv.hset(keys.status(keys.unit_id("web", "a")), "phase", "Failed"))
    assert refused(lambda: srv.lpush("apply", "forged"))
    assert refused(lambda: srv.get(keys.RENDER_PREFIX + "a/" + "0" * 64))


def test_previews_are_started_by_the_server_and_filled_by_workers(
        server: acl_redis.AclRedis) -> None:
    """The server creates a preview's record and index and reads its units; it cannot write
    units or any unit's status. A pull cluster's worker fills the preview's record. The
    read-only CLI reads previews and writes none."""
    from shared.state import previews

    srv = server.client("fleetsync-server")
    pid = previews.create(srv, source="git", ref="feature")["id"]
    previews.update(srv, pid, state="running")
    assert refused(lambda: srv.rpush(keys.preview_units(pid), "{}"))
    pull = server.client(A)
    previews.set_total(pull, pid, 1)
    assert previews.add_units(pull, pid, [{"app": "web", "cluster": "a", "outcome": "unchanged"}])
    previews.update(pull, pid, state="done")
    cli = server.client("fleetsync-cli")
    record = previews.load(cli, pid)
    assert record and record["state"] == "done" and len(record["units"]) == 1
    assert [r["id"] for r in previews.recent(srv)] == [pid]
    assert refused(lambda: cli.hset(keys.preview(pid), "done", 0))
    assert refused(lambda: previews.create(cli, source="git", ref="x"))
