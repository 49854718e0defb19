"""The one "now" of change-window decisions, with a test aid to move it.

Every window decision (the workers' hold of a unit, the rollout's wave gate, the
CLI's ``fleetsync windows``) takes its instant from ``now()``. In production that
is the system clock. Tests of windows that open and close cannot wait for a cron
schedule, so ``FLEETSYNC_TEST_CLOCK_FILE`` may name a file that holds an offset in
seconds (``3600``, ``-90.5``): ``now()`` reads it at each decision and adds it, so
a test moves the clock of running workers and beat by rewriting the file.

It is read only from the process environment (never from Redis or the spec), it
moves nothing but window decisions (locks, leases, intervals keep real time), and
a file that is missing, unreadable, too large or not a finite number within a
year is ignored: the real clock is used.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone
from typing import Mapping

CLOCK_FILE_ENV = "FLEETSYNC_TEST_CLOCK_FILE"
MAX_OFFSET = 366 * 86400.0
_MAX_BYTES = 64


def offset(environ: Mapping[str, str] | None = None) -> float:
    """The test offset in seconds (0 without ``FLEETSYNC_TEST_CLOCK_FILE`` or a readable
    number in it)."""
    path = (os.environ if environ is None else environ).get(CLOCK_FILE_ENV, "")
    if not path:
        return 0.0
    try:
        with open(path, "rb") as f:
            text = f.read(_MAX_BYTES + 1)
        value = float(text.decode("ascii").strip()) if len(text) <= _MAX_BYTES else 0.0
    except (OSError, ValueError, UnicodeDecodeError):
        return 0.0
    return value if math.isfinite(value) and abs(value) <= MAX_OFFSET else 0.0


def now(environ: Mapping[str, str] | None = None) -> datetime:
    """The aware UTC instant window decisions are made at."""
    return datetime.now(timezone.utc) + timedelta(seconds=offset(environ))
