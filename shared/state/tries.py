"""Which try of a run a message is for: the run record counts the run's retries, and each
render or apply message carries the count it was sent for (``shared/protocol.py``: only
a message of the current try may begin the run)."""

from __future__ import annotations

from shared.state import keys
from shared.protocol import RunState


def try_of(unit: str, run_id: str, tries: int) -> list[tuple[str, str, str]]:
    """The run record's try count, assumed to be the message's (the usual case)."""
    return [(keys.run(unit, run_id), "tries", str(tries) if tries else "")]


def stale(state: RunState | None, known: list[str], tries: int) -> bool:
    """The message is for an earlier try than the record's. A run with no record (lost
    with a Redis flush) has nothing to compare with: not stale."""
    return state is not None and int(known[0] or 0) > tries
