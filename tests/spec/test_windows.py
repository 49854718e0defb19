"""``windows:`` of fleet.yaml: parsed into frozen Windows; each problem names file, line, field."""

from __future__ import annotations

import pytest

from shared.spec.load import validate_file
from shared.spec.model import Selector, Window
from shared.spec.windows import parse_window_duration

HEAD = """\
sources:
  - name: gitops
    url: https://example.com/gitops.git
    branch: main
clusters:
  - name: production
    labels: {env: production}
  - name: staging
    labels: {env: staging}
applications:
  - name: web
    source: gitops
    path: web
    clusters: {matchLabels: {}}
windows:
"""   # the windows start at line 16


def check(tmp_path, windows: str):
    spec = tmp_path / "fleet.yaml"
    spec.write_text(HEAD + windows)
    fleet, problems, warnings = validate_file(str(spec))
    return fleet, [p.replace(str(spec), "F") for p in problems], \
        [w.replace(str(spec), "F") for w in warnings]


def test_a_window_with_every_key(tmp_path):
    fleet, problems, _ = check(tmp_path, """\
  - name: friday-freeze
    kind: deny
    schedule: "0 18 * * 5"
    duration: 2d12h
    timeZone: Europe/Berlin
    applications: {names: [web]}
    clusters: {matchLabels: {env: production}}
    manualSync: true
    drift: correct
  - {name: nightly, kind: allow, schedule: "0 2 * * *", duration: 30m}
""")
    assert problems == []
    assert fleet.windows == (
        Window("friday-freeze", "deny", "0 18 * * 5", 216000.0, "Europe/Berlin",
               Selector(names=("web",)), Selector(match_labels={"env": "production"}),
               True, "correct"),
        Window("nightly", "allow", "0 2 * * *", 1800.0))


def test_no_windows_is_an_empty_tuple(tmp_path):
    fleet, problems, _ = check(tmp_path, "")
    assert problems == [] and fleet.windows == ()


@pytest.mark.parametrize("entry, expected", [
    ('schedule: "61 * * * *"', "F:17: windows[0].schedule: '61 * * * *' does not parse as a cron expression"),
    ('schedule: "0 18 * *"', "F:17: windows[0].schedule: '0 18 * *' is not a cron expression: give five "
                             "fields (minute hour day-of-month month day-of-week), e.g. '0 18 * * 5'"),
    ('schedule: "0 0 30 2 *"', "F:17: windows[0].schedule: '0 0 30 2 *' never fires"),
    ("timeZone: Mars/Olympus", "F:17: windows[0].timeZone: unknown time zone 'Mars/Olympus': "
                               "give an IANA name such as Europe/Berlin or UTC"),
    ("duration: 0", "F:17: windows[0].duration: duration '0' must be greater than zero"),
    ("duration: 0d", "F:17: windows[0].duration: duration '0d' must be greater than zero"),
    ("duration: 32d", "F:17: windows[0].duration: duration '32d' is longer than 31 days"),
    ("duration: soon", "F:17: windows[0].duration: invalid duration 'soon': use e.g. 30m, 2h, 1d or 1d12h"),
    ("kind: maybe", "F:17: windows[0].kind: must be allow or deny, not 'maybe'"),
    ("drift: fix", "F:17: windows[0].drift: must be correct or detect, not 'fix'"),
    ("colour: red", "F:17: windows[0]: unknown key 'colour' (expected one of: name, kind, schedule, "
                    "duration, timeZone, applications, clusters, manualSync, drift)"),
    ("applications: {names: [api]}", "F:17: windows[0].applications.names[0]: no application named 'api'"),
    ("applications: {matchLabels: {a: b}}",
     "F:17: windows[0].applications.matchLabels: applications carry no labels: select them by names"),
    ("clusters: {names: [moon]}", "F:17: windows[0].clusters.names[0]: no cluster named 'moon'"),
])
def test_each_problem_names_file_line_and_field(tmp_path, entry, expected):
    defaults = {"kind": "deny", "schedule": '"0 18 * * 5"', "duration": "2h"}
    defaults.pop(entry.split(":")[0], None)
    body = f"  - name: w\n    {entry}\n" + "".join(f"    {k}: {v}\n" for k, v in defaults.items())
    fleet, problems, _ = check(tmp_path, body)   # the entry under test is on line 17
    assert fleet is None
    assert problems == [expected]


def test_duplicate_names(tmp_path):
    _, problems, _ = check(tmp_path, """\
  - {name: freeze, kind: deny, schedule: "0 18 * * 5", duration: 2h}
  - {name: freeze, kind: deny, schedule: "0 18 * * 6", duration: 2h}
""")
    assert problems == ["F:17: windows[1].name: duplicate window name 'freeze' (first at line 16)"]


def test_a_window_selecting_no_unit_is_a_warning(tmp_path):
    fleet, problems, warnings = check(tmp_path, """\
  - {name: freeze, kind: deny, schedule: "0 18 * * 5", duration: 2h,
     clusters: {matchLabels: {env: nowhere}}}
""")
    assert problems == [] and fleet.windows[0].name == "freeze"
    assert "F:16: windows[0]: window 'freeze' selects no unit" in warnings
    assert len(fleet.warnings) == len(warnings)   # the Fleet carries them too


@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("2h", 7200), ("1d", 86400),
                                           ("1d12h", 129600), ("31d", 31 * 86400)])
def test_durations(text, seconds):
    assert parse_window_duration(text) == seconds
