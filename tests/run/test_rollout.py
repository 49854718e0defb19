"""The rollout state machine (``shared/rollout.py``) and the ``rollout:`` key, pure: no Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import rollout as r
from shared.errors import SpecError
from shared.rollout import Record, Seen, WavePlan
from shared.spec.load import load_fleet
from shared.spec.rollout import fleet_waves

WAVES = [WavePlan(("dev",), 1), WavePlan(("stage",), 1, pause=60.0),
         WavePlan(("p1", "p2", "p3", "p4"), 2)]
ALL = ("dev", "stage", "p1", "p2", "p3", "p4")
OLD, NEW = "a" * 40, "b" * 40


def ready(rev: str, *clusters: str) -> dict[str, Seen]:
    return {c: Seen("Ready", rev) for c in clusters}


def rolled_out(rev: str) -> Record:
    return r.decide(WAVES, Record(), rev, ready(rev, *ALL), 0.0).record


def test_a_first_look_at_a_fleet_ready_at_one_revision_takes_it_as_stable() -> None:
    record = rolled_out(OLD)
    assert record.complete(3) and record.stable == OLD


def test_a_new_revision_goes_wave_by_wave_with_pause_and_max_parallel() -> None:
    statuses = ready(OLD, *ALL)
    d = r.decide(WAVES, rolled_out(OLD), NEW, statuses, 100.0)
    assert d.started == ("dev",)
    assert d.allowed == {"dev": NEW, **{c: OLD for c in ALL[1:]}}
    statuses.update(ready(NEW, "dev"))
    d = r.decide(WAVES, d.record, NEW, statuses, 101.0)
    assert d.started == ("stage",) and d.allowed["p1"] == OLD
    statuses.update(ready(NEW, "stage"))
    d = r.decide(WAVES, d.record, NEW, statuses, 102.0)
    assert d.started == () and d.pause_ends == 162.0            # stage Ready: its pause begins
    d = r.decide(WAVES, d.record, NEW, statuses, 150.0)
    assert d.started == () and d.pause_ends == 0.0              # told once
    d = r.decide(WAVES, d.record, NEW, statuses, 162.0)
    assert d.started == ("p1", "p2")                            # maxParallel 2
    statuses.update(ready(NEW, "p1"))
    d = r.decide(WAVES, d.record, NEW, statuses, 163.0)
    assert d.started == ("p3",)
    statuses.update(ready(NEW, "p2", "p3", "p4"))
    d = r.decide(WAVES, d.record, NEW, statuses, 164.0)
    assert d.started == ("p4",)
    d = r.decide(WAVES, d.record, NEW, statuses, 165.0)
    assert d.record.complete(3) and d.record.stable == NEW
    assert r.state_of(d.record, 3) == "Complete"
    assert [e["message"] for e in d.record.events][-1].endswith("complete: every wave Ready")


def test_a_degraded_cluster_halts_and_later_waves_keep_the_old_revision() -> None:
    statuses = ready(OLD, *ALL)
    d = r.decide(WAVES, rolled_out(OLD), NEW, statuses, 0.0)
    statuses["dev"] = Seen("Failed", NEW, "invalid ConfigMap")
    d = r.decide(WAVES, d.record, NEW, statuses, 1.0)
    assert d.record.halted == "Halted at wave 1: dev Failed: invalid ConfigMap"
    assert d.allowed["stage"] == OLD and d.allowed["dev"] == NEW
    assert r.state_of(d.record, 3) == "Halted"
    aborted = r.abort(d.record, 3, "alice")
    assert all(r.allowed(aborted, c) == OLD for c in ALL)
    d = r.decide(WAVES, aborted, NEW, ready(OLD, *ALL), 2.0)        # the head is still NEW
    assert set(d.allowed.values()) == {OLD} and r.state_of(d.record, 3) == "Aborted"
    d = r.decide(WAVES, d.record, "c" * 40, ready(OLD, *ALL), 3.0)  # a fix: a new rollout
    assert d.started == ("dev",) and d.record.stable == OLD


def test_first_rollout_later_waves_wait_and_promote_and_pause() -> None:
    d = r.decide(WAVES, Record(), NEW, {}, 0.0)
    assert d.allowed == {"dev": NEW, **{c: "" for c in ALL[1:]}}
    paused = r.pause(d.record, "bob", "now")
    statuses = ready(NEW, "dev")
    d = r.decide(WAVES, paused, NEW, statuses, 1.0)
    assert d.started == () and r.state_of(d.record, 3) == "Paused"
    d = r.decide(WAVES, r.promote(d.record, 3, "bob", wave=3), NEW, statuses, 2.0)
    assert set(d.started) == {"stage", "p1", "p2", "p3", "p4"}
    with pytest.raises(ValueError, match="no wave 4"):
        r.promote(d.record, 3, "bob", wave=4)
    with pytest.raises(ValueError, match="nothing to go back to"):
        r.abort(d.record, 3, "bob")


def test_an_urgent_revert_goes_everywhere_at_once() -> None:
    d = r.decide(WAVES, rolled_out(OLD), NEW, ready(OLD, *ALL), 0.0, revert=True,
                 urgent_on_revert=True)
    assert set(d.allowed.values()) == {NEW}
    d = r.decide(WAVES, rolled_out(OLD), NEW, ready(OLD, *ALL), 0.0, revert=True)
    assert d.started == ("dev",)                 # without urgentOnRevert: an ordinary one


def test_the_record_round_trips_as_json() -> None:
    record = r.decide(WAVES, Record(), NEW, {}, 0.0).record
    assert Record.from_json(record.to_json()) == record


def test_rollout_key_in_the_spec(tmp_path: Path) -> None:
    spec = tmp_path / "fleet.yaml"
    head = """sources:
  - {name: git, url: https://git.example.com/a.git, branch: main}
clusters:
  - {name: dev, labels: {env: development}}
  - {name: stage, labels: {env: staging}}
  - {name: p1, labels: {env: production}}
  - {name: p2, labels: {env: production}}
  - {name: lab, labels: {env: lab}}
applications:
  - name: web
    source: git
    path: app
    clusters: {names: [dev, stage, p1, p2, lab]}
"""
    spec.write_text(head + """    rollout:
      waves:
        - clusters: {names: [dev]}
        - clusters: {matchLabels: {env: staging}}
          pause: 5m
        - clusters: {matchLabels: {env: production}}
          maxParallel: 50%
""")
    fleet = load_fleet(str(spec))
    plans = fleet_waves(fleet, fleet.applications["web"])
    assert plans == [WavePlan(("dev",), 1), WavePlan(("stage",), 1, 300.0),
                     WavePlan(("p1", "p2"), 1), WavePlan(("lab",), 1)]   # lab: implicit last
    spec.write_text(head + """    rollout:
      waves:
        - clusters: {names: [nope]}
          maxParallel: 0
          pause: soon
      urgentOnRevert: "yes"
""")
    with pytest.raises(SpecError) as err:
        load_fleet(str(spec))
    text = str(err.value)
    assert "fleet.yaml:16: applications[0].rollout.waves[0].clusters.names[0]: no cluster named 'nope'" in text
    assert "fleet.yaml:17: applications[0].rollout.waves[0].maxParallel: must be a count" in text
    assert "fleet.yaml:18: applications[0].rollout.waves[0].pause: invalid duration 'soon'" in text
    assert "fleet.yaml:19: applications[0].rollout.urgentOnRevert: must be true or false" in text
