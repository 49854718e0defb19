"""The protocol's Redis adapter on a real Redis and on the in-process stand-in:
the same transitions as the pure functions, written atomically, outcomes recorded."""

from __future__ import annotations

import random

import pytest
import redis

from shared.state import keys
from shared import protocol
from shared.errors import TransientError
from shared.protocol import Phase, RunState, Unit, Verdict
from shared.state.runs import Outcome, Runs, Timing
from shared.state.status import HistoryEntry, StatusStore, UnitStatus
from tests.conftest import new_redis_db

UNIT = "c1/web"


@pytest.fixture(params=["redis", "fakeredis"])
def client(request):
    if request.param == "redis":
        url = new_redis_db(request.getfixturevalue("redis_url"))
        yield redis.Redis.from_url(url, decode_responses=True)
    else:
        import fakeredis

        yield fakeredis.FakeRedis(decode_responses=True)


def _end(runs: Runs, run: str, owner: str, phase: Phase = Phase.READY) -> protocol.Step:
    status = UnitStatus("web", "c1", phase=phase.value, revision="abc", message="2 configured")
    entry = HistoryEntry(revision="abc", trigger="beat", result=phase.value, message="2 configured", started_at="t0", finished_at="t1", run_id=run)
    return runs.end(UNIT, run, owner, Outcome(phase, "2 configured", "abc"), status=status,
                    entry=entry)


def test_a_request_during_a_run_parks_and_is_handed_over(client):
    runs = Runs(client)
    first = runs.request("web", "c1", trigger="beat", revision="abc")
    assert first.verdict == Verdict.QUEUED
    assert runs.request("web", "c1", trigger="cli").other == first.other      # joined
    begun = runs.begin(UNIT, first.other, "o1", "c1")
    assert begun.step.verdict == Verdict.STARTED and begun.token > 0
    second = runs.request("web", "c1", trigger="cli", revision="def")
    assert second.verdict == Verdict.QUEUED and second.other != first.other
    parked = runs.begin(UNIT, second.other, "o2", "c1", park={"render_key": "k2"})
    assert parked.step.verdict == Verdict.BUSY
    ended = _end(runs, first.other, "o1")
    assert ended.send == second.other and runs.run(UNIT, second.other)["render_key"] == "k2"
    again = runs.begin(UNIT, second.other, "o2", "c1")
    assert again.step.verdict == Verdict.STARTED and again.token > begun.token
    assert again.revision == "def"


def test_an_ending_records_run_status_and_history_at_once(client):
    runs = Runs(client)
    run = runs.request("web", "c1", trigger="api").other
    runs.begin(UNIT, run, "o1", "c1")
    _end(runs, run, "o1")
    record = runs.run(UNIT, run)
    assert record["state"] == "done" and record["phase"] == "Ready"
    store = StatusStore(client)
    assert store.get_status("web", "c1").phase == "Ready"
    assert store.history("web", "c1")[0]["run_id"] == run
    assert runs.unit(UNIT) == Unit()
    assert not client.exists(keys.lock(UNIT))


def test_a_retrying_run_is_the_one_queued_run(client):
    runs = Runs(client)
    run = runs.request("web", "c1", trigger="beat").other
    runs.begin(UNIT, run, "o1", "c1")
    step = runs.retry(UNIT, run, "o1", countdown=30, tries=1,
                      status=UnitStatus("web", "c1", phase="Progressing", revision="", message="unreachable"))
    assert step.verdict == Verdict.RETRY
    assert runs.run(UNIT, run)["state"] == RunState.RETRYING.value
    for _ in range(5):
        assert runs.request("web", "c1", trigger="beat").verdict == Verdict.JOINED
    assert client.pttl(keys.queued(UNIT)) > 30_000
    assert StatusStore(client).get_status("web", "c1").message == "unreachable"


def test_a_run_whose_holder_vanished_is_recorded_lost(client):
    runs = Runs(client, Timing(lock_ms=60_000))
    first = runs.request("web", "c1", trigger="beat").other
    runs.begin(UNIT, first, "o1", "c1")
    client.delete(keys.lock(UNIT))                  # its lock expired: the worker is gone
    second = runs.request("web", "c1", trigger="beat").other
    assert runs.begin(UNIT, second, "o2", "c1").step.lost == first
    assert runs.run(UNIT, first)["state"] == "done" and runs.run(UNIT, first)["phase"] == "Failed"


def test_an_unreachable_redis_is_a_transient_error():
    from tests.support.stack import free_port

    runs = Runs(redis.Redis(port=free_port(), decode_responses=True, socket_connect_timeout=1))
    with pytest.raises(TransientError, match="Redis"):
        runs.request("web", "c1", trigger="beat")


def test_the_adapter_follows_the_pure_transitions(client):
    """Random sequences of events: after each, Redis holds what the pure function says.
    A begin or touch is sometimes a late copy from an earlier try of the run (stale)."""
    rng = random.Random(3)
    runs = Runs(client)
    expected, states, owners, tries = Unit(), {}, {}, {}
    for n in range(300):
        run = rng.choice(list(states) or ["r0"])
        event = rng.choice(["request", "begin", "end", "retry", "touch"])
        before = expected
        sent_for = max(0, tries.get(run, 0) - rng.choice([0, 0, 1]))
        stale = states.get(run) is not None and sent_for < tries.get(run, 0)
        if event == "request":
            step = runs.request("web", "c1", trigger="beat")
            pure = protocol.request(before, step.other if step.verdict == Verdict.QUEUED else "x")
            if step.verdict == Verdict.QUEUED:
                states[step.other] = RunState.QUEUED
        elif event == "begin":
            owners[run] = f"o{n}"
            step = runs.begin(UNIT, run, owners[run], "c1", tries=sent_for).step
            pure = protocol.begin(before, run, states.get(run), owners[run], stale=stale)
        elif event == "touch":
            step = runs.touch(UNIT, run, sent_for)[0]
            pure = protocol.touch(before, run, states.get(run), stale)
        elif event == "end":
            step = _end(runs, run, owners.get(run, ""))
            pure = protocol.end(before, run, owners.get(run, ""), states.get(run))
        else:
            step = runs.retry(UNIT, run, owners.get(run, ""), countdown=1,
                              tries=tries.get(run, 0) + 1)
            pure = protocol.retry(before, run, owners.get(run, ""))
            if pure.verdict == Verdict.RETRY:
                tries[run] = tries.get(run, 0) + 1
        assert step.verdict == pure.verdict, (event, run, before)
        if pure.run_state is not None and event != "request":
            states[run] = pure.run_state
        if pure.lost:
            states[pure.lost] = RunState.DONE
        expected = pure.unit
        assert runs.unit(UNIT) == expected, (event, run, before)
    assert any(tries.values())


def test_a_copy_of_an_earlier_try_is_dropped_and_the_current_try_begins(client):
    """A parked run sent twice (its holder's send and a request's revival): the first
    copy begins it; once it has retried, the late copy is a duplicate, not a chain."""
    runs = Runs(client)
    run = runs.request("web", "c1", trigger="beat").other
    assert runs.begin(UNIT, run, "o1", "c1").step.verdict == Verdict.STARTED
    assert runs.retry(UNIT, run, "o1", countdown=5, tries=1).verdict == Verdict.RETRY
    assert runs.run(UNIT, run)["tries"] == "1"
    assert runs.begin(UNIT, run, "o2", "c1").step.verdict == Verdict.DUPLICATE   # try 0
    assert runs.touch(UNIT, run)[0].verdict == Verdict.DUPLICATE
    assert runs.unit(UNIT) == Unit(queued=run)                  # nothing written
    assert runs.begin(UNIT, run, "o3", "c1", tries=1).step.verdict == Verdict.STARTED


def test_a_request_reads_the_known_render_and_skips_known_failures_in_one_trip(client):
    runs = Runs(client)
    client.set("fleetsync:rendered:c1/web:abc:h", "key1")
    step, memo = runs.request_reading("web", "c1", trigger="beat", revision="abc",
                                      memo="fleetsync:rendered:c1/web:abc:h")
    assert step.verdict == Verdict.QUEUED and memo == "key1"
    StatusStore(client).set_status(UnitStatus("web", "c1", phase="Failed", revision="abc", message="bad",
                                              failed_key="abc:h"))
    _end(runs, step.other, "", Phase.FAILED)
    client.hset(keys.status(UNIT), "failed_key", "abc:h")
    skipped, _ = runs.request_reading("web", "c1", trigger="beat", revision="abc",
                                      failed_key="abc:h")
    assert skipped.verdict == Verdict.SKIPPED
    again, _ = runs.request_reading("web", "c1", trigger="beat", revision="abd",
                                    failed_key="abd:h")
    assert again.verdict == Verdict.QUEUED


def test_a_retry_takes_over_its_own_lock_in_redis(client):
    runs = Runs(client)
    run = runs.request("web", "c1", trigger="beat").other
    first = runs.begin(UNIT, run, "o1", "c1")
    assert first.step.verdict == Verdict.STARTED          # then Redis failed: no release
    again = runs.begin(UNIT, run, "o2", "c1", taking_over="o1")
    assert again.step.verdict == Verdict.STARTED and again.token > first.token
    assert client.get(keys.lock(UNIT)) == "o2"
    _end(runs, run, "o2")
    assert runs.unit(UNIT) == Unit()


def test_renewing_the_lock_keeps_the_parked_run_alive(client):
    runs = Runs(client, Timing(lock_ms=60_000, queued_ms=180_000))
    r1 = runs.request("web", "c1", trigger="beat").other
    runs.begin(UNIT, r1, "o1", "c1")
    r2 = runs.request("web", "c1", trigger="cli").other
    assert runs.begin(UNIT, r2, "o2", "c1").step.verdict == Verdict.BUSY
    for key in (keys.queued(UNIT), keys.pending(UNIT), keys.lock(UNIT)):
        client.pexpire(key, 1000)                   # about to expire, as after 3 TTLs
    assert runs.renew(UNIT, "o1")
    assert client.pttl(keys.lock(UNIT)) > 50_000
    assert client.pttl(keys.pending(UNIT)) > 170_000 and client.pttl(keys.queued(UNIT)) > 170_000
    assert not runs.renew(UNIT, "o9")               # not its lock: nothing renewed
    client.delete(keys.lock(UNIT))
    assert not runs.renew(UNIT, "o1")


def test_an_ending_is_written_once_in_redis(client):
    runs = Runs(client)
    r1 = runs.request("web", "c1", trigger="beat").other
    runs.begin(UNIT, r1, "o1", "c1")
    r2 = runs.request("web", "c1", trigger="cli").other
    runs.begin(UNIT, r2, "o2", "c1")
    assert _end(runs, r1, "o1").send == r2
    again = _end(runs, r1, "", Phase.FAILED)         # a crash reported after the ending
    assert again.verdict == Verdict.DUPLICATE and not again.send
    assert client.hget(keys.run(UNIT, r1), "phase") == "Ready"
    assert StatusStore(client).get_status("web", "c1").phase == "Ready"
    assert len(StatusStore(client).history("web", "c1")) == 1
    assert runs.unit(UNIT) == Unit(queued=r2, pending=r2)
