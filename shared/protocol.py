"""The sync-unit protocol: how a request becomes a run, and how every run ends.

A *run* is one attempt to make a unit (application on a cluster) match Git. It
is named by a ``run_id`` chosen when it is requested, and moves through

    queued --begin--> running --end--> done
       ^    \\            |
       |     busy         retry (lock released; the run is queued again)
       |      (parked behind the holder, still queued)
       +---------------------+

Per unit, Redis holds four small facts (``Unit``): the run that is queued and
has not started (requests *join* it), the run parked behind the lock holder,
the run holding the lock, and the lock's owner. Every transition below is a
pure function of that snapshot (and the run's own state); ``shared/state/runs.py``
reads the snapshot, calls the function, and writes the result only if the
snapshot is unchanged (compare-and-set), so the rules live here alone and are
tested without Redis.

The invariants that follow from these functions:
- a request joins the queued run (it has not started, so it will see the
  request's revision) or queues a new one; never nothing;
- at most one run per unit is queued (including one waiting to retry), so a
  beat tick during a retry adds no second chain;
- every ending (done, retry, superseded, lost) releases what the run held and
  clears the marker that pointed at it; a parked run is handed back to be sent;
- a run begins only from a message of its current try (the run record counts its
  retries; each message carries the count it was sent for), so a copy (a parked run
  sent by its holder and revived by a request, a redelivery) is dropped when it is
  delivered late, rather than going on as a second chain of the same run;
- an ending is written once: a run that is done already does not end again
  (a crash reported after its ending, a second delivery), so its outcome stays;
- a parked run lives as long as its holder holds the lock (``hold``: renewing
  the lock renews the parked run's markers), and stays parked until it begins:
  when the holder's send of it is lost (the broker refused, the worker died right
  after the ending), the next request finds it parked with no holder and sends it
  again (``REVIVE``).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, replace


class Phase(str, enum.Enum):
    """Where a sync unit stands (DESIGN: phases of a sync unit)."""

    READY = "Ready"                 # applied at the wanted revision, every object healthy
    PROGRESSING = "Progressing"     # applied, health pending; or waiting to retry
    DEGRADED = "Degraded"           # applied, health failed
    DRIFTED = "Drifted"             # live differs from Git and was not corrected
    FAILED = "Failed"               # could not render or apply; nothing half-written
    SUSPENDED = "Suspended"
    REMOVED = "Removed"
    UNKNOWN = "Unknown"             # never synced, or stale

    def __str__(self) -> str:
        return self.value


class RunState(str, enum.Enum):
    QUEUED = "queued"               # requested, not started (requests join it)
    RUNNING = "running"             # holds the unit's lock
    RETRYING = "retrying"           # will begin again after a countdown (still joinable)
    DONE = "done"                   # ended: the outcome is recorded

    def __str__(self) -> str:
        return self.value


class Trigger(str, enum.Enum):
    BEAT = "beat"
    CLI = "cli"
    API = "api"
    WEBHOOK = "webhook"
    COALESCED = "coalesced"
    RETRY = "retry"
    ROLLOUT = "rollout"             # a wave of a rollout started, or an operator moved it

    def __str__(self) -> str:
        return self.value


class Verdict(str, enum.Enum):
    QUEUED = "queued"               # request: a new run was queued; send it
    SKIPPED = "skipped"             # request (beat): failed permanently at this revision and spec
    JOINED = "joined"               # request: joined the queued run
    REVIVE = "revive"               # request: joined a parked run whose holder is gone; send it
    STARTED = "started"             # begin: the run holds the lock
    GO = "go"                       # touch: a stage without the lock may proceed
    BUSY = "busy"                   # begin: parked behind the holder, who sends it at the end
    SUPERSEDED = "superseded"       # a newer queued run serves every request this one had
    DUPLICATE = "duplicate"         # a second delivery of a run that began already: drop it
    RETRY = "retry"                 # the run is queued again, to begin after a countdown
    ENDED = "ended"                 # the run is done

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Unit:
    """The protocol's facts about one unit; "" means none."""

    queued: str = ""                # run id that has not started
    pending: str = ""               # run id parked behind the lock holder
    running: str = ""               # run id holding the lock
    lock: str = ""                  # the lock's owner token


@dataclass(frozen=True)
class Step:
    """The outcome of a transition: the unit's new facts and what the caller does next."""

    unit: Unit
    verdict: Verdict
    run_state: RunState | None = None      # the new state of the acting run (None: unchanged)
    other: str = ""                         # the run that supersedes this one, or is joined
    send: str = ""                          # a parked run that must now be sent
    lost: str = ""                          # a run that held the lock and vanished
    lock_lost: bool = False                 # the acting run's lock had expired or was taken


FINISHED = (RunState.RUNNING, RunState.DONE)


def request(unit: Unit, new_run: str, known_failure: bool = False) -> Step:
    """A sync of the unit is asked for; ``known_failure``: beat asks again for a unit that
    failed permanently at this revision and spec, which only a change can cure."""
    if known_failure:
        return Step(unit, Verdict.SKIPPED)
    if unit.queued:
        if unit.pending == unit.queued and not unit.lock:
            return Step(unit, Verdict.REVIVE, other=unit.queued)
        return Step(unit, Verdict.JOINED, other=unit.queued)
    return Step(replace(unit, queued=new_run), Verdict.QUEUED, RunState.QUEUED, other=new_run)


def touch(unit: Unit, run: str, state: RunState | None, stale: bool = False) -> Step:
    """A stage that needs no lock (render, a dependency check) starts for ``run``.
    ``stale``: the message was sent for an earlier try of the run (see ``begin``)."""
    if state in FINISHED or stale:
        return Step(unit, Verdict.DUPLICATE)
    if unit.queued and unit.queued != run:
        return Step(unit, Verdict.SUPERSEDED, RunState.DONE, other=unit.queued)
    return Step(replace(unit, queued=run), Verdict.GO, RunState.QUEUED)


def begin(unit: Unit, run: str, state: RunState | None, owner: str,
          previous_owner: str = "", stale: bool = False) -> Step:
    """The apply stage of ``run`` wants the unit's lock (owner token ``owner``).

    ``previous_owner`` is the lock owner of this run's own previous attempt, when that
    attempt could not release it (Redis failed under it): the retry takes it over.
    ``stale``: the message was sent for an earlier try of the run (each retry counts
    one; a parked run can be sent twice, by its holder and by a request that revived
    it): only a message of the run's current try may begin it, so copies never become
    chains of their own."""
    mine = bool(previous_owner) and unit.lock == previous_owner
    resumed = state == RunState.RUNNING and unit.running == run and (not unit.lock or mine)
    if stale or (state in FINISHED and not resumed):     # a second delivery of a run that began
        return Step(unit, Verdict.DUPLICATE)
    if unit.queued and unit.queued != run:
        return Step(unit, Verdict.SUPERSEDED, RunState.DONE, other=unit.queued)
    lost = unit.running if unit.running and not unit.lock and unit.running != run else ""
    if unit.lock and not (resumed and mine):
        return Step(replace(unit, queued=run, pending=run), Verdict.BUSY, RunState.QUEUED)
    return Step(Unit(lock=owner, running=run), Verdict.STARTED, RunState.RUNNING, lost=lost)


def retry(unit: Unit, run: str, owner: str = "") -> Step:
    """``run`` failed transiently (or must wait): it is queued again, unless a newer
    queued run already serves its requests."""
    freed, send, lock_lost = _release(unit, run, owner)
    if freed.queued and freed.queued != run:
        return Step(freed, Verdict.SUPERSEDED, RunState.DONE, other=freed.queued, send=send,
                    lock_lost=lock_lost)
    return Step(replace(freed, queued=run), Verdict.RETRY, RunState.RETRYING, lock_lost=lock_lost)


def end(unit: Unit, run: str, owner: str = "", state: RunState | None = None) -> Step:
    """``run`` is over, whatever its outcome; a parked run is handed back to be sent.
    A run that is done already is not ended again: its outcome was written once."""
    if state == RunState.DONE:
        return Step(unit, Verdict.DUPLICATE)
    freed, send, lock_lost = _release(unit, run, owner)
    if freed.queued == run:
        freed = replace(freed, queued="")
    return Step(freed, Verdict.ENDED, RunState.DONE, send=send, lock_lost=lock_lost)


def _release(unit: Unit, run: str, owner: str) -> tuple[Unit, str, bool]:
    """Let go of the lock (when ours) and hand over the parked run."""
    lock_lost = bool(owner) and unit.lock != owner
    freed = unit
    if owner and unit.lock == owner:
        freed = replace(freed, lock="")
    if freed.running == run:
        freed = replace(freed, running="")
    if freed.pending == run:                  # its own parking is over
        freed = replace(freed, pending="")
    # the parked run stays parked (pending) until it begins: should this send be lost, a
    # request finds it parked with no holder and sends it again (REVIVE)
    send = freed.pending if freed.pending and not freed.lock else ""
    return freed, send, lock_lost


def hold(unit: Unit, owner: str) -> tuple[str, ...]:
    """The lock holder renews its lock: the markers that live on with it, by ``Unit``
    field: the lock, and the run parked behind it (its holder sends it when it ends, so
    it lives as long as the lock is held); none when the lock is no longer ``owner``'s."""
    if not owner or unit.lock != owner:
        return ()
    if not unit.pending:
        return ("lock",)
    return ("lock", "pending", "queued") if unit.queued == unit.pending else ("lock", "pending")


# -- back-off -------------------------------------------------------------------------

def backoff(attempt: int, *, factor: float = 2.0, cap: float = 300.0,
            rng: random.Random | None = None) -> float:
    """Seconds before retry number ``attempt`` (0-based): exponential, capped, full jitter
    over the upper half so that retries of many units spread out but never come early."""
    ceiling = min(cap, factor * (2 ** max(0, attempt)))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def cluster_backoff(failures: int) -> float:
    """Seconds between probes of an unreachable cluster: 5, 10, 20, 40, then every 60."""
    return float(min(60, 5 * 2 ** max(0, failures - 1)))
