"""The pure parts of holding units by change windows: the test clock, hostile text cut and
cleaned, the hold's message and status fields, an override grant kept in Redis."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared import clock
from shared.protocol import Phase
from shared.spec.window_rules import Decision
from shared.audit import clean
from shared.state.overrides import MAX_REASON, Override, Overrides
from shared.state.runs import Outcome
from shared.state.status import UnitStatus
from workers.run.windows import Hold, applied_revision, refusal


def test_the_clock_moves_by_the_offset_in_the_named_file(tmp_path):
    path = tmp_path / "clock"
    path.write_text("3600")
    env = {clock.CLOCK_FILE_ENV: str(path)}
    assert clock.offset(env) == 3600.0
    moved = clock.now(env) - datetime.now(timezone.utc)
    assert timedelta(minutes=59) < moved < timedelta(minutes=61)
    path.write_text("-90.5\n")
    assert clock.offset(env) == -90.5


@pytest.mark.parametrize("content", ["", "soon", "nan", "inf", "1e12", "1" * 100, "\xff"])
def test_a_clock_file_that_is_not_a_small_number_is_ignored(tmp_path, content):
    path = tmp_path / "clock"
    path.write_bytes(content.encode("latin-1"))
    assert clock.offset({clock.CLOCK_FILE_ENV: str(path)}) == 0.0


def test_without_the_variable_or_the_file_the_real_clock(tmp_path):
    assert clock.offset({}) == 0.0
    assert clock.offset({clock.CLOCK_FILE_ENV: str(tmp_path / "missing")}) == 0.0


def test_hostile_text_becomes_one_short_printable_line():
    assert clean("hotfix\nINC-1\t\x1b[2J\u202e done", 100) == "hotfix INC-1 [2J done"
    long = clean("x" * 1000, MAX_REASON)
    assert len(long) == MAX_REASON and long.endswith("…")
    assert clean(None, 10) == "" and clean(42, 10) == ""


UNTIL = datetime(2026, 12, 14, 5, 0, tzinfo=timezone.utc)
HELD = Decision(False, "friday-freeze", UNTIL, manual_sync=True, drift_corrected=False,
                time_zone="Europe/Berlin")


def test_a_hold_says_until_when_in_the_window_zone_and_what_waits():
    hold = Hold(HELD, "abc1234def")
    assert hold.message() == ("held by window friday-freeze until Mon 06:00 Europe/Berlin; "
                              "new revision waiting: abc1234")
    assert hold.until == "2026-12-14T05:00:00Z"
    assert Hold(HELD, "abc1234def", count=3).message().endswith(
        "; 3 new revisions waiting: abc1234")
    told = hold.tell(Outcome(Phase.READY, "3 unchanged", "old"))
    assert told.summary == f"3 unchanged; {hold.message()}"
    assert (told.held_by, told.held_until, told.held_revision) == (
        "friday-freeze", "2026-12-14T05:00:00Z", "abc1234def")
    status = UnitStatus("web", "prod", held_by="friday-freeze", held_until=hold.until,
                        held_revision="abc1234def")
    assert hold.told_in(status) and not Hold(HELD, "").told_in(status)
    assert status.mapping()["held_by"] == "friday-freeze"
    assert UnitStatus("web", "prod").mapping()["held_by"] == ""     # "" lifts a hold


def test_a_manual_sync_needs_a_reason_and_a_window_that_allows_it():
    hold = Hold(HELD, "abc1234")
    assert "needs a reason (fleetsync sync APP --reason TEXT)" in refusal(hold, "")
    assert refusal(hold, "hotfix") == ""
    closed = Hold(Decision(False, "x", UNTIL, manual_sync=False), "")
    assert "allows no manual sync (manualSync: false)" in refusal(closed, "hotfix")


def test_the_applied_revision_comes_from_the_applied_key():
    assert applied_revision(UnitStatus("a", "c", applied_key="abc:1234")) == "abc"
    assert applied_revision(UnitStatus("a", "c", revision="abc")) == ""


def test_a_grant_round_trips_and_garbage_is_no_grant(redis_client):
    store = Overrides(redis_client)
    assert store.granted("web", "prod") is None
    grant = Override("abc", "alice", "hotfix", "freeze", "2026-12-07T10:00:00Z")
    store.grant("web", "prod", grant, ttl=60)
    assert store.granted("web", "prod") == grant
    assert 0 < redis_client.ttl("fleetsync:window_override:prod/web") <= 60
    redis_client.set("fleetsync:window_override:prod/web", "{not json")
    assert store.granted("web", "prod") is None


def test_a_wave_admits_no_cluster_a_window_holds_and_starts_once_it_opens():
    from shared.rollout import Record, Seen, WavePlan, decide

    waves = [WavePlan(("a",), 1), WavePlan(("b", "c"), 2)]
    ready = {c: Seen(Phase.READY.value, "new") for c in ("a",)}
    record = Record(target="new", stable="old", wave=1, admitted=("a",))
    held = decide(waves, record, "new", ready, 100.0, held=lambda c: c == "b")
    assert held.record.admitted == ("a", "c") and held.allowed["b"] == "old"
    opened = decide(waves, held.record, "new", ready, 200.0)
    assert opened.record.admitted == ("a", "c", "b") and opened.started == ("b",)


NOW = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)


def test_the_cluster_hold_configmap_read_as_hostile_text():
    from workers.run.cluster_hold import ClusterHold, parse

    assert parse({"data": {}}, NOW) == ClusterHold()
    assert parse({"data": None}, NOW) == ClusterHold() and parse("junk", NOW) == ClusterHold()
    held = parse({"data": {"by": "anna\n" + "x" * 200, "reason": "on site",
                           "until": "2026-12-08T06:00:00+01:00"}}, NOW)
    assert held is not None and held.until == "2026-12-08T05:00:00Z"
    assert len(held.by) == 64 and "\n" not in held.by
    assert held.message().startswith(f"held on the cluster by {held.by} until Tue 05:00 UTC "
                                     "(on site): delete ConfigMap fleetsync-system/")
    assert parse({"data": {"until": "2026-12-07T09:59:59Z"}}, NOW) is None     # expired
    for bad in ("tomorrow", "2026-12-08T06:00:00", "9" * 1000, ["x"]):      # naive, huge
        found = parse({"data": {"until": bad}}, NOW)
        assert found is not None and not found.until and "not RFC 3339" in found.problem
        assert "until lifted" in found.message()


def test_a_hold_on_the_cluster_passes_no_manual_sync():
    from workers.run.cluster_hold import HELD_BY

    hold = Hold(Decision(False, HELD_BY, None, manual_sync=False, drift_corrected=False), "",
                "held on the cluster by anna until lifted")
    assert hold.message() == "held on the cluster by anna until lifted"
    assert "no manual sync passes a hold put on the cluster" in refusal(hold, "hotfix")


def test_a_kept_decision_is_the_rules_decision_on_both_sides_of_each_change():
    from types import SimpleNamespace

    from shared.spec.model import Cluster, Window
    from shared.spec.window_rules import decide
    from workers.run.windows import decision

    windows = (Window("freeze", "deny", "0 16 * * 5", 64 * 3600, "Europe/Berlin"),
               Window("nightly", "allow", "0 2 * * *", 7200))
    fleet, app, prod = SimpleNamespace(windows=windows), SimpleNamespace(name="web"), Cluster("p")
    start = datetime(2026, 12, 10, 23, 0, tzinfo=timezone.utc)
    for minutes in [0, 150, 179, 180, 181, 60 * 24 + 175, 60 * 24 + 185, 60 * 40, 60 * 30, 5]:
        now = start + timedelta(minutes=minutes)          # forwards, and back (a test clock)
        assert decision(fleet, app, prod, now) == decide(windows, "web", prod, now), now
