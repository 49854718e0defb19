"""The rules of change windows (``shared/spec/window_rules.py``) as a table: pure, fixed times."""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from shared.spec.model import Cluster, Selector, Window
from shared.spec.window_rules import decide, is_open, next_change, window_change

PROD = Cluster("production", labels={"env": "production"})
STAGING = Cluster("staging", labels={"env": "staging"})
ONLY_PROD = Selector(match_labels={"env": "production"})


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def deny(name: str, cron: str, hours: float, zone: str = "UTC", **kw) -> Window:
    return Window(name, "deny", cron, hours * 3600, zone, **kw)


def allow(name: str, cron: str, hours: float, zone: str = "UTC", **kw) -> Window:
    return Window(name, "allow", cron, hours * 3600, zone, **kw)


NIGHTLY = allow("nightly", "0 2 * * *", 2)                 # 02:00-04:00 UTC
FREEZE = deny("freeze", "0 22 * * *", 4)                   # 22:00-02:00 UTC, over midnight
LUNCH = deny("lunch", "0 12 * * *", 1, clusters=ONLY_PROD)
LONG_LUNCH = deny("long-lunch", "30 11 * * *", 3)          # 11:30-14:30, overlaps lunch

# windows, cluster, now, allowed, holder, until
TABLE = [
    ((), PROD, utc(2026, 12, 7, 12, 0), True, None, None),
    ((NIGHTLY,), PROD, utc(2026, 12, 7, 3, 0), True, None, None),
    ((NIGHTLY,), PROD, utc(2026, 12, 7, 4, 0), False, "nightly", utc(2026, 12, 8, 2, 0)),
    ((NIGHTLY,), PROD, utc(2026, 12, 7, 1, 59), False, "nightly", utc(2026, 12, 7, 2, 0)),
    ((LUNCH,), PROD, utc(2026, 12, 7, 12, 30), False, "lunch", utc(2026, 12, 7, 13, 0)),
    ((LUNCH,), STAGING, utc(2026, 12, 7, 12, 30), True, None, None),        # not selected
    ((LUNCH,), PROD, utc(2026, 12, 7, 13, 0), True, None, None),            # half-open
    # an open deny wins over an open allow
    ((allow("day", "0 8 * * *", 10), LUNCH), PROD, utc(2026, 12, 7, 12, 15), False, "lunch",
     utc(2026, 12, 7, 13, 0)),
    # overlapping denies: held until the later one closes; the first open in spec order holds
    ((LUNCH, LONG_LUNCH), PROD, utc(2026, 12, 7, 12, 15), False, "lunch", utc(2026, 12, 7, 14, 30)),
    ((LUNCH, LONG_LUNCH), STAGING, utc(2026, 12, 7, 12, 15), False, "long-lunch",
     utc(2026, 12, 7, 14, 30)),
    # midnight: a deny from 22:00 for 4h holds on both sides of it
    ((FREEZE,), PROD, utc(2026, 12, 7, 23, 59), False, "freeze", utc(2026, 12, 8, 2, 0)),
    ((FREEZE,), PROD, utc(2026, 12, 8, 0, 0), False, "freeze", utc(2026, 12, 8, 2, 0)),
    ((FREEZE,), PROD, utc(2026, 12, 8, 2, 0), True, None, None),
    # the freeze closes at 02:00 exactly when nightly opens: allowed from 02:00
    ((FREEZE, NIGHTLY), PROD, utc(2026, 12, 8, 1, 0), False, "freeze", utc(2026, 12, 8, 2, 0)),
    # a deny that covers the whole allow window pushes the opening to the next day
    ((deny("d", "0 1 7 12 *", 4), NIGHTLY), PROD, utc(2026, 12, 7, 1, 30), False, "d",
     utc(2026, 12, 8, 2, 0)),
]


@pytest.mark.parametrize("windows, cluster, now, allowed, holder, until", TABLE)
def test_precedence(windows, cluster, now, allowed, holder, until):
    decision = decide(windows, "web", cluster, now)
    assert (decision.allowed, decision.window, decision.until) == (allowed, holder, until)


BERLIN, NEW_YORK = "Europe/Berlin", "America/New_York"
# A daily window at a wall-clock time inside the hour that daylight saving skips or repeats.
# Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
# New York: 2026-03-08 02:00 EST -> 03:00 EDT; 2026-11-01 02:00 EDT -> 01:00 EST.
DST = [
    # spring: 02:30 does not exist; it opens at 02:30 on the old offset (03:30 CEST = 01:30 UTC)
    (allow("b", "30 2 * * *", 1, BERLIN), utc(2026, 3, 29, 1, 0), False),   # 03:00 CEST
    (allow("b", "30 2 * * *", 1, BERLIN), utc(2026, 3, 29, 1, 30), True),   # 03:30 CEST
    (allow("b", "30 2 * * *", 1, BERLIN), utc(2026, 3, 29, 2, 29), True),
    (allow("b", "30 2 * * *", 1, BERLIN), utc(2026, 3, 29, 2, 30), False),
    # autumn: 02:30 comes twice; the window opens once, at the first (02:30 CEST = 00:30 UTC)
    (allow("b", "30 2 * * *", 1, BERLIN), utc(2026, 10, 25, 0, 30), True),
    (allow("b", "30 2 * * *", 1, BERLIN), utc(2026, 10, 25, 1, 30), False),  # 02:30 CET
    # the day after each change, the usual offset again
    (allow("b", "30 2 * * *", 1, BERLIN), utc(2026, 3, 30, 0, 30), True),    # 02:30 CEST
    (allow("b", "30 2 * * *", 1, BERLIN), utc(2026, 10, 26, 1, 30), True),   # 02:30 CET
    (allow("n", "30 2 * * *", 1, NEW_YORK), utc(2026, 3, 8, 7, 0), False),   # 03:00 EDT
    (allow("n", "30 2 * * *", 1, NEW_YORK), utc(2026, 3, 8, 7, 30), True),   # 03:30 EDT
    (allow("n", "30 1 * * *", 1, NEW_YORK), utc(2026, 11, 1, 5, 30), True),  # 01:30 EDT
    (allow("n", "30 1 * * *", 1, NEW_YORK), utc(2026, 11, 1, 6, 30), False),  # 01:30 EST
    (allow("n", "30 1 * * *", 1, NEW_YORK), utc(2026, 11, 2, 6, 30), True),  # 01:30 EST
]


@pytest.mark.parametrize("window, now, open_", DST)
def test_daylight_saving(window, now, open_):
    assert is_open(window, now) is open_
    assert decide((window,), "web", PROD, now).allowed is open_


def test_on_the_spring_day_the_wall_clock_shows_the_opening_an_hour_late():
    window = allow("b", "30 2 * * *", 1, BERLIN)
    opens = window_change(window, utc(2026, 3, 29, 0, 0))
    assert opens is not None and f"{opens.astimezone(ZoneInfo(BERLIN)):%H:%M %Z}" == "03:30 CEST"


def test_a_2h_window_on_the_autumn_night_lasts_two_hours_of_elapsed_time():
    window = allow("b", "30 2 * * *", 2, BERLIN)
    assert window_change(window, utc(2026, 10, 25, 1, 0)) == utc(2026, 10, 25, 2, 30)  # 03:30 CET


def test_message_in_the_window_time_zone():
    friday = deny("friday-freeze", "0 18 * * 5", 60, BERLIN)      # Fri 18:00 to Mon 06:00
    decision = decide((friday,), "web", PROD, utc(2026, 12, 5, 12, 0))
    assert decision.message() == "held by window friday-freeze until Mon 06:00 Europe/Berlin"
    assert decision.until == utc(2026, 12, 7, 5, 0)
    assert decide((friday,), "web", PROD, utc(2026, 12, 7, 5, 0)).message() == "allowed"


def test_manual_sync_and_drift_follow_the_most_careful_holder():
    lenient = deny("lenient", "0 12 * * *", 1, manual_sync=True, drift="correct")
    strict = deny("strict", "0 12 * * *", 2)
    noon = utc(2026, 12, 7, 12, 30)
    alone = decide((lenient,), "web", PROD, noon)
    assert (alone.manual_sync, alone.drift_corrected) == (True, True)
    both = decide((lenient, strict), "web", PROD, noon)
    assert (both.manual_sync, both.drift_corrected) == (False, False)
    assert decide((strict,), "web", PROD, utc(2026, 12, 7, 15)).manual_sync is True  # allowed


def test_applications_selector():
    only_api = deny("api", "0 12 * * *", 1, applications=Selector(names=("api",)))
    assert decide((only_api,), "web", PROD, utc(2026, 12, 7, 12, 30)).allowed
    assert not decide((only_api,), "api", PROD, utc(2026, 12, 7, 12, 30)).allowed


def test_next_change_is_the_next_open_or_close_of_a_selecting_window():
    windows = (NIGHTLY, LUNCH)
    assert next_change(windows, "web", PROD, utc(2026, 12, 7, 5)) == utc(2026, 12, 7, 12)
    assert next_change(windows, "web", STAGING, utc(2026, 12, 7, 5)) == utc(2026, 12, 8, 2)
    assert next_change(windows, "web", PROD, utc(2026, 12, 7, 12, 10)) == utc(2026, 12, 7, 13)
    assert next_change((), "web", PROD, utc(2026, 12, 7, 5)) is None


# -- the one-step search away from clock changes agrees with the search with slack -------

@pytest.mark.parametrize("cron,zone", [("30 2 * * *", "Europe/Berlin"),
                                        ("*/20 1-3 * * 0", "America/New_York"),
                                        ("0 9 * * 1-5", "Europe/Berlin"),
                                        ("15 */6 * * *", "UTC")])
def test_the_quick_search_agrees_with_the_careful_one(cron, zone, monkeypatch):
    import shared.spec.window_rules as rules

    window = Window("w", "deny", cron, 3600, zone)
    instants = [datetime(2026, month, day, hour, minute, tzinfo=timezone.utc)
                for month, day in ((3, 7), (3, 8), (3, 28), (3, 29), (10, 24), (10, 25),
                                   (11, 1), (11, 2))
                for hour in range(0, 24, 3) for minute in (0, 29, 31)]
    quick = [(rules.last_fire(window, t), rules.next_fire(window, t)) for t in instants]
    monkeypatch.setattr(rules, "_steady", lambda zone, now: False)
    careful = [(rules.last_fire(window, t), rules.next_fire(window, t)) for t in instants]
    assert quick == careful


def test_a_window_whose_fires_overlap_never_closes():
    every_five = deny("always", "*/5 * * * *", 1)
    now = utc(2026, 12, 7, 10, 0)
    assert is_open(every_five, now) and window_change(every_five, now) is None
    held = decide([every_five], "web", PROD, now)
    assert not held.allowed and held.until is None
