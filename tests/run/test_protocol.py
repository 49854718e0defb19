"""The sync-unit protocol's transitions, pure: no Redis, no mocks."""

from __future__ import annotations

import random

from shared import protocol as p
from shared.protocol import RunState, Unit, Verdict


def test_a_request_queues_a_run_when_none_is_queued():
    step = p.request(Unit(), "r1")
    assert step.verdict == Verdict.QUEUED and step.unit.queued == "r1"
    assert step.run_state == RunState.QUEUED


def test_a_request_joins_the_queued_run_even_while_another_runs():
    step = p.request(Unit(queued="r2", running="r1", lock="o1"), "r3")
    assert step.verdict == Verdict.JOINED and step.other == "r2"
    assert step.unit == Unit(queued="r2", running="r1", lock="o1")


def test_a_request_revives_a_parked_run_whose_holder_is_gone():
    step = p.request(Unit(queued="r2", pending="r2", running="r1"), "r3")
    assert step.verdict == Verdict.REVIVE and step.other == "r2"


def test_begin_takes_the_lock_and_clears_the_queued_marker():
    step = p.begin(Unit(queued="r1"), "r1", RunState.QUEUED, "o1")
    assert step.verdict == Verdict.STARTED
    assert step.unit == Unit(running="r1", lock="o1")


def test_begin_after_the_marker_expired_still_runs():
    assert p.begin(Unit(), "r1", RunState.QUEUED, "o1").verdict == Verdict.STARTED


def test_begin_parks_behind_the_holder_and_stays_joinable():
    step = p.begin(Unit(queued="r2", running="r1", lock="o1"), "r2", RunState.QUEUED, "o2")
    assert step.verdict == Verdict.BUSY
    assert step.unit == Unit(queued="r2", pending="r2", running="r1", lock="o1")
    assert p.request(step.unit, "r3").verdict == Verdict.JOINED


def test_a_stale_attempt_is_superseded_by_the_newer_queued_run():
    step = p.begin(Unit(queued="r2"), "r1", RunState.QUEUED, "o1")
    assert step.verdict == Verdict.SUPERSEDED and step.other == "r2"
    assert step.run_state == RunState.DONE and step.unit == Unit(queued="r2")


def test_a_second_delivery_of_a_started_or_done_run_is_dropped():
    for state in (RunState.RUNNING, RunState.DONE):
        assert p.begin(Unit(running="r9", lock="o9"), "r1", state, "o1").verdict == Verdict.DUPLICATE
    assert p.touch(Unit(), "r1", RunState.DONE).verdict == Verdict.DUPLICATE


def test_a_copy_sent_for_an_earlier_try_of_a_waiting_run_is_dropped():
    waiting = Unit(queued="r1")
    assert p.begin(waiting, "r1", RunState.RETRYING, "o1").verdict == Verdict.STARTED
    assert p.begin(waiting, "r1", RunState.RETRYING, "o1", stale=True).verdict == Verdict.DUPLICATE
    assert p.touch(waiting, "r1", RunState.RETRYING, stale=True).verdict == Verdict.DUPLICATE


def test_a_redelivered_run_whose_attempt_died_resumes():
    step = p.begin(Unit(running="r1"), "r1", RunState.RUNNING, "o2")
    assert step.verdict == Verdict.STARTED and step.lost == ""


def test_a_holder_that_vanished_is_reported_lost():
    step = p.begin(Unit(running="r1"), "r2", RunState.QUEUED, "o2")
    assert step.verdict == Verdict.STARTED and step.lost == "r1"


def test_end_releases_and_hands_over_the_parked_run():
    parked = Unit(queued="r2", pending="r2", running="r1", lock="o1")
    step = p.end(parked, "r1", "o1")
    assert step.verdict == Verdict.ENDED and step.send == "r2"
    assert step.unit == Unit(queued="r2", pending="r2")       # parked until it begins
    assert not step.lock_lost
    begun = p.begin(step.unit, "r2", RunState.QUEUED, "o2")
    assert begun.verdict == Verdict.STARTED and begun.unit == Unit(running="r2", lock="o2")


def test_a_handed_over_run_whose_send_was_lost_is_sent_by_the_next_request():
    handed = p.end(Unit(queued="r2", pending="r2", running="r1", lock="o1"), "r1", "o1").unit
    step = p.request(handed, "r3")
    assert step.verdict == Verdict.REVIVE and step.other == "r2"


def test_an_ending_is_written_once():
    done = Unit(queued="r2", pending="r2")       # r1 ended and handed r2 over
    step = p.end(done, "r1", "", RunState.DONE)
    assert step.verdict == Verdict.DUPLICATE and step.unit == done
    assert step.run_state is None and not step.send


def test_the_holder_keeps_its_parked_run_alive_with_its_lock():
    assert p.hold(Unit(running="r1", lock="o1"), "o1") == ("lock",)
    parked = Unit(queued="r2", pending="r2", running="r1", lock="o1")
    assert p.hold(parked, "o1") == ("lock", "pending", "queued")
    assert p.hold(Unit(queued="r3", pending="r2", running="r1", lock="o1"), "o1") \
        == ("lock", "pending")
    assert p.hold(parked, "o9") == () and p.hold(Unit(), "") == ()


def test_end_of_a_lockless_stage_clears_its_marker():
    step = p.end(Unit(queued="r1"), "r1")
    assert step.unit == Unit() and step.run_state == RunState.DONE


def test_end_with_a_lost_lock_says_so_and_frees_nothing_of_others():
    step = p.end(Unit(running="r2", lock="o2"), "r1", "o1")
    assert step.lock_lost and step.unit == Unit(running="r2", lock="o2")


def test_retry_requeues_the_run_so_ticks_join_it():
    step = p.retry(Unit(running="r1", lock="o1"), "r1", "o1")
    assert step.verdict == Verdict.RETRY and step.unit == Unit(queued="r1")
    assert step.run_state == RunState.RETRYING
    assert p.request(step.unit, "r5").verdict == Verdict.JOINED


def test_retry_is_superseded_by_a_run_queued_meanwhile():
    step = p.retry(Unit(queued="r2", running="r1", lock="o1"), "r1", "o1")
    assert step.verdict == Verdict.SUPERSEDED and step.other == "r2"
    assert step.unit == Unit(queued="r2")


def test_retry_of_a_lockless_stage_keeps_it_queued():
    step = p.retry(Unit(queued="r1", running="r0", lock="o0"), "r1")
    assert step.verdict == Verdict.RETRY and step.unit == Unit(queued="r1", running="r0", lock="o0")


def test_touch_supersedes_or_goes():
    assert p.touch(Unit(queued="r1"), "r1", RunState.QUEUED).verdict == Verdict.GO
    assert p.touch(Unit(queued="r2"), "r1", RunState.QUEUED).verdict == Verdict.SUPERSEDED


def test_at_most_one_run_is_queued_whatever_the_order_of_events():
    """Random walks over every transition: the unit never queues two runs, and every
    run that is not queued, parked or running has been told to end or to be sent."""
    rng = random.Random(7)
    for _ in range(300):
        unit, states, owners = Unit(), {}, {}
        for n in range(40):
            run = rng.choice(list(states) or ["r0"])
            event = rng.choice(["request", "begin", "end", "retry", "touch"])
            if event == "request":
                step = p.request(unit, f"r{n}")
                if step.verdict == Verdict.QUEUED:
                    states[f"r{n}"] = RunState.QUEUED
            elif event == "begin":
                owners[run] = f"o{n}"
                step = p.begin(unit, run, states.get(run), owners[run])
            elif event == "touch":
                step = p.touch(unit, run, states.get(run))
            elif event == "end":
                step = p.end(unit, run, owners.get(run, ""))
            else:
                step = p.retry(unit, run, owners.get(run, ""))
            if step.run_state is not None and event != "request":
                states[run] = step.run_state
            unit = step.unit
            assert not unit.pending or unit.pending == unit.queued or not unit.queued
            assert bool(unit.lock) == bool(unit.running) or not unit.running or not unit.lock


def test_backoff_grows_is_capped_and_never_early():
    rng = random.Random(1)
    delays = [p.backoff(n, factor=2, cap=60, rng=rng) for n in range(10)]
    assert 1 <= delays[0] <= 2 and 2 <= delays[1] <= 4
    assert all(30 <= d <= 60 for d in delays[6:])
    assert [p.cluster_backoff(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_task_calls_read_as_units_for_people():
    from shared.tasks_api import describe, describe_kwargs

    assert describe("fleetsync.apply", ["platform", "staging", "k" * 64],
                    {"revision": "81a51c7deadbeef", "trigger": "beat"}) \
        == "platform@staging rev 81a51c7 (beat)"
    assert describe("fleetsync.sync", ["platform", None], {"trigger": "cli"}) \
        == "platform@every cluster (cli)"
    assert describe("fleetsync.reconcile_cluster", ["prod"], {"trigger": "beat"}) \
        == "cluster prod (beat)"
    assert describe("fleetsync.fetch_source", ["git"]) == "source git"
    assert describe_kwargs({"run_id": "1a2b3c4d5e", "attempt": 2}) == "run 1a2b3c4d, attempt 2"


def test_beat_skips_a_unit_that_failed_permanently_at_this_revision_and_spec():
    step = p.request(Unit(), "r1", known_failure=True)
    assert step.verdict == Verdict.SKIPPED and step.unit == Unit()


def test_a_retry_takes_over_the_lock_its_own_attempt_could_not_release():
    held = Unit(running="r1", lock="o1")                  # Redis failed under attempt o1
    step = p.begin(held, "r1", RunState.RUNNING, "o2", previous_owner="o1")
    assert step.verdict == Verdict.STARTED and step.unit == Unit(running="r1", lock="o2")
    assert p.begin(held, "r1", RunState.RUNNING, "o2").verdict == Verdict.DUPLICATE
    other = Unit(running="r1", lock="o9")                 # not its lock: a second delivery
    assert p.begin(other, "r1", RunState.RUNNING, "o2", previous_owner="o1").verdict \
        == Verdict.DUPLICATE
