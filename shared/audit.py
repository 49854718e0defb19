"""Durable audit lines: what operators did to the fleet, as one JSON log line each.

Redis history is recent and may be wiped; a log pipeline keeps what the structured
log says. So each act that bypasses or stops the normal flow (a manual sync through
a change window, a hold put on a cluster from the cluster itself, its lifting) is
also written here as one line with ``event: audit``: who, what, which units, why.
The text fields come from outside (a CLI user, a ConfigMap on a cluster): callers
pass them through ``clean`` (one printable line, cut); the logger's own
processors mask anything under a key that looks like a credential.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Sequence

from shared.logs import get_logger

AUDIT = "audit"
MAX_UNITS = 100


def record(*, who: str, what: str, units: Sequence[str], why: str, **details: Any) -> None:
    """One ``event: audit`` line on the ``fleetsync.audit`` logger, as
    ``scheduler/holds.py`` writes the operators' actions."""
    get_logger("fleetsync.audit").info(
        AUDIT, who=who, what=what, units=list(units[:MAX_UNITS]),
        more_units=max(0, len(units) - MAX_UNITS), why=why, **details)


def clean(text: object, limit: int) -> str:
    """``text`` as one line of printable characters, at most ``limit`` long."""
    raw = text if isinstance(text, str) else ""
    kept = "".join(" " if unicodedata.category(ch)[0] in "CZ" and ch != " " else ch
                   for ch in raw[: limit * 4])
    line = " ".join(kept.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
