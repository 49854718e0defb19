"""Roll-ups and state changes, decided purely from units' statuses and history."""

from __future__ import annotations

from scheduler.notify.decide import (AppView, Tracked, UnitView, fleet_rollup, rollup,
                                     rollup_message, transition)

REV = "abc1234567890def"
OLD = "0123456789abcdef"
T0 = 1_700_000_000.0


def stamp(seconds: float) -> str:
    from shared.state.status import now_iso

    return now_iso(T0 + seconds)


def unit(cluster: str, phase: str = "Ready", revision: str = REV, message: str = "",
         start: float = 0.0, end: float = 1.0, run_id: str = "r1") -> UnitView:
    history = ({"revision": revision, "result": phase, "started_at": stamp(start),
                "finished_at": stamp(end)},)
    return UnitView(cluster, phase, revision, message, run_id, history)


def view(*units: UnitView, targets: tuple[str, ...] = ("a", "b", "c"),
         first_seen: float | None = T0) -> AppView:
    return AppView("web", REV, targets, {u.cluster: u for u in units}, first_seen)


def test_settled_when_every_target_is_final_at_the_revision_with_the_time_it_took():
    r = rollup(view(unit("a", end=5), unit("b", start=2, end=30), unit("c", start=1, end=42)),
               T0 + 50, 600)
    assert r is not None and r.settled
    m = rollup_message(r)
    assert (m.key, m.event, m.state) == (f"rollup:web:{REV}", "rollup", "success")
    assert m.text == "abc12345 web: 3/3 Ready in 42 s"
    assert m.summary == "3/3 Ready in 42 s"


def test_a_failed_cluster_is_named_with_the_first_line_of_its_message():
    failed = unit("c", "Failed", message="c/web @abc12345678: render: bad.yaml:3: oops\nmore")
    r = rollup(view(unit("a"), unit("b"), failed),
               T0 + 5, 600)
    m = rollup_message(r)
    assert m.text == "abc12345 web: 2/3 Ready in 1.0 s; c Failed: render: bad.yaml:3: oops"
    assert m.state == "failure"


def test_not_settled_while_a_target_is_progressing_or_elsewhere_then_pending():
    for other in (unit("c", "Progressing"), unit("c", revision=OLD)):
        r = rollup(view(unit("a"), unit("b"), other), T0 + 5, 600)
        assert r is not None and not r.settled and not r.timed_out
        m = rollup_message(r)
        assert (m.event, m.state, m.key) == ("pending", "pending", f"pending:web:{REV}")


def test_a_target_without_status_keeps_it_unsettled():
    r = rollup(view(unit("a"), unit("b")), T0 + 5, 600)
    assert r is not None and not r.settled and r.missing == {"c": "no status yet"}


def test_nothing_before_any_unit_reaches_the_revision():
    assert rollup(view(unit("a", revision=OLD), unit("b", revision=OLD)), T0, 600) is None


def test_the_settle_timeout_reports_what_stands_and_who_is_not_there():
    v = view(unit("a"), unit("b"), unit("c", "Progressing", run_id="r9"))
    assert not rollup(v, T0 + 599, 600).timed_out
    r = rollup(v, T0 + 600, 600)
    assert r.timed_out and r.state == "failure"
    assert rollup_message(r).text == ("abc12345 web: 2/3 Ready in 1.0 s; not settled after the "
                                      "settle timeout: c (Progressing)")


def test_the_duration_counts_from_the_first_start_to_each_units_first_settle():
    slow = UnitView("c", "Ready", REV, "", "r2", (
        {"revision": REV, "result": "Ready", "started_at": stamp(40), "finished_at": stamp(41)},
        {"revision": REV, "result": "Ready", "started_at": stamp(20), "finished_at": stamp(21)},
        {"revision": REV, "result": "Progressing", "started_at": stamp(3), "finished_at": stamp(4)},
        {"revision": OLD, "result": "Ready", "started_at": stamp(-100), "finished_at": stamp(-99)}))
    r = rollup(view(unit("a", start=2, end=3), unit("b", start=2, end=3), slow), T0 + 60, 600)
    assert r.seconds == 19      # from 2 s (first start at REV) to 21 s (c's first Ready)


def test_fleet_rollup_over_applications_waits_for_all():
    a = rollup(view(unit("a"), unit("b"), unit("c")), T0, 600)
    b = rollup(AppView("api", REV, ("a", "b"), {"a": unit("a"), "b": unit("b", "Degraded")}, T0),
               T0, 600)
    pending = rollup(AppView("db", REV, ("a",), {"a": unit("a", "Progressing")}, T0), T0, 600)
    m = fleet_rollup("gh", REV, [a, b])
    assert (m.key, m.state, m.app) == (f"fleet:gh:{REV}", "failure", None)
    assert m.summary == "4/5 Ready (2 applications); b/api Degraded"
    assert fleet_rollup("gh", REV, [a, b, pending]).event == "pending"


def test_a_change_into_failed_is_reported_once_it_held_for_the_debounce():
    bad = unit("a", "Failed", message="apply: invalid", run_id="r2")
    msg, t = transition("web", bad, Tracked("ok", "Ready"), T0, debounce=10)
    assert msg is None and t.pending == "bad"
    msg, t2 = transition("web", bad, t, T0 + 9, debounce=10)
    assert msg is None and t2 == t
    msg, t3 = transition("web", bad, t2, T0 + 10, debounce=10)
    assert msg.text == "abc12345 a/web Failed: apply: invalid" and msg.event == "failure"
    assert msg.key == "failure:a/web:r2"
    assert t3 == Tracked("bad", "Failed")
    assert transition("web", bad, t3, T0 + 20, debounce=10)[0] is None     # still Failed: quiet


def test_a_flap_shorter_than_the_debounce_says_nothing():
    msg, t = transition("web", unit("a", "Degraded"), Tracked("ok", "Ready"), T0, 10)
    msg2, t2 = transition("web", unit("a", "Ready"), t, T0 + 3, 10)
    assert msg is None and msg2 is None and t2 == Tracked("ok", "Ready")


def test_recovery_names_what_it_was_and_transient_phases_decide_nothing():
    t = Tracked("bad", "Degraded")
    assert transition("web", unit("a", "Progressing"), t, T0, 0) == (None, t)
    msg, t2 = transition("web", unit("a", "Ready", run_id="r3"), t, T0, 0)
    assert msg.text == "abc12345 a/web Ready again (was Degraded)"
    assert (msg.event, msg.state, msg.key) == ("recovery", "success", "recovery:a/web:r3")
    assert t2 == Tracked("ok", "Ready")


def test_a_unit_first_seen_healthy_is_quiet_and_first_seen_failed_is_news():
    assert transition("web", unit("a"), None, T0, 0) == (None, Tracked("ok", "Ready"))
    msg, _ = transition("web", unit("a", "Failed"), None, T0, 0)
    assert msg is not None and msg.event == "failure"
    assert transition("web", unit("a", "Unknown"), None, T0, 0) == (None, None)


def test_tracked_round_trips():
    t = Tracked("bad", "Failed", "ok", 12.5)
    assert Tracked.from_dict(t.to_dict()) == t


def test_a_held_revision_is_one_message_per_unit_and_revision():
    from scheduler.notify.decide import held
    from scheduler.notify.send import wants
    from shared.spec.model import Route

    waiting = UnitView("prod", "Ready", OLD, "3 unchanged", "r1", held_by="friday-freeze",
                       held_until="2026-12-14T05:00:00Z", held_revision=REV)
    message = held("web", waiting)
    assert message is not None and message.key == f"held:prod/web:{REV}"
    assert message.text == ("abc12345 prod/web held by window friday-freeze until "
                            "2026-12-14T05:00:00Z; stays at 01234567")
    assert held("web", waiting) == message                      # the same key every tick
    assert held("web", UnitView("prod", held_by="friday-freeze")) is None   # nothing waits
    assert held("web", UnitView("prod")) is None
    on_site = held("web", UnitView("prod", held_by="configmap/fleetsync-hold", held_revision=REV))
    assert on_site is not None and "prod/web held on the cluster; stays at" in on_site.text
    assert wants(Route("hook", "webhook", url="https://x.example", events=("held",)), message)
    assert not wants(Route("hook", "webhook", url="https://x.example"), message)
