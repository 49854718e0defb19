"""The Redis adapter of the sync-unit protocol: runs, locks, outcomes.

Each transition of ``shared/protocol.py`` is carried out by one script call in
the usual case: the pure function decides on the snapshot the unit usually has
at that point (queued, pending, running, lock and the run's state), and the
script writes the decision only if Redis holds exactly that snapshot
(compare-and-set); otherwise it answers what it holds and the transition is
decided again on that. The rules stay in Python; the Lua (``shared/state/cas.py``,
with ``Ops``, what one call assumes, reads and writes) is a dumb, generic
compare-and-set. The writes of an ending carry the outcome too (run record,
unit status, history), so a run can never end without its outcome recorded.

Redis errors become ``TransientError`` here (a Redis restart is a blip; the
task is retried). Fencing tokens are a per-unit counter, advanced in the same
script that takes the lock; after a flush or a failover that lost it, the lock
holder moves it past the token the cluster's inventory holds (``advance_fence``).
``holding`` is what the apply engine asks before each tier of writes. The lock's
renewal (``renew``) is a compare-and-set too: it renews the markers of the run parked
behind the holder with the lock (``protocol.hold``), so a long apply never outlives them.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import redis

from shared.state import keys
from shared import protocol
from shared.errors import TransientError
from shared.state.cas import SCRIPT, Ops
from shared.state.tries import stale as _stale, try_of as _try_of
from shared.state.locks import Leases
from shared.protocol import Phase, RunState, Step, Unit, Verdict
from shared.state.status import HistoryEntry, UnitStatus, status_ops

REFRESH = (Verdict.GO, Verdict.BUSY)


@dataclass(frozen=True)
class Timing:
    lock_ms: int = 60_000           # a unit's lock lives this long unless renewed
    queued_ms: int = 180_000        # a queued run that never begins a stage is given up after this
    run_ms: int = 6 * 3600_000      # run records are kept this long for waiters
    history_size: int = 50


LEASE_SAFETY = 0.8      # a lease is trusted for this share of the lock's TTL (clock drift)


@dataclass
class Lease:
    """Until when (``time.monotonic()``) a renewed lock is surely still ours."""

    valid_until: float

    def holds(self) -> bool:
        return time.monotonic() < self.valid_until


@dataclass(frozen=True)
class Begun:
    step: Step
    token: int = 0
    cluster_next_try: float = 0.0   # when the cluster is down: when to try it next
    revision: str = ""              # the revision the run must serve (newest request's)


@dataclass(frozen=True)
class Outcome:
    """How a run ended: what its waiters, the unit's status and history are told."""

    phase: Phase
    summary: str
    revision: str = ""
    reason: str = ""
    result: dict[str, Any] | None = None
    failed_key: str = ""
    error: Any = None               # the FleetsyncError that ended it, if any
    health_deadline: float = 0.0    # Progressing on health: when it turns Degraded
    held_by: str = ""               # a change window holds the unit (status's held_* fields)
    held_until: str = ""
    held_revision: str = ""


class Runs:
    """The protocol on one decoded Redis client (real, or fakeredis for ``--local``)."""

    def __init__(self, client: Any, timing: Timing = Timing()) -> None:
        self.client = client
        self.timing = timing
        self._cas = client.register_script(SCRIPT)
        self._leases = Leases(client)

    # -- transitions ---------------------------------------------------------------
    def request(self, app: str, cluster: str, *, trigger: str, revision: str = "",
                requested_at: float | None = None) -> Step:
        return self.request_reading(app, cluster, trigger=trigger, revision=revision,
                                    requested_at=requested_at)[0]

    def request_reading(self, app: str, cluster: str, *, trigger: str, revision: str = "",
                        requested_at: float | None = None, failed_key: str = "",
                        memo: str = "") -> tuple[Step, str]:
        """Join the queued run or queue one. With ``failed_key`` (beat's requests), a unit
        that failed permanently at that (revision:spec) is skipped. Also returns the value
        of ``memo`` (a key read in the same round trip: the unit's known render)."""
        unit, new = keys.unit_id(app, cluster), uuid.uuid4().hex

        def writes(step: Step, ops: Ops) -> None:
            if step.verdict == Verdict.QUEUED:
                self._run_fields(ops, unit, new, state=RunState.QUEUED, unit=unit, app=app,
                                 cluster=cluster, trigger=trigger, revision=revision,
                                 requested_at=repr(requested_at or time.time()))
            elif step.verdict != Verdict.SKIPPED and revision:
                self._run_fields(ops, unit, step.other, revision=revision)   # it serves the newest

        def decide(u: Unit, _: RunState | None, known: list[str]) -> Step:
            return protocol.request(u, new, known_failure=bool(failed_key)
                                    and known[0] == failed_key)
        decision = [(keys.status(unit), "failed_key", "")] if failed_key else []
        step, values, _ = self._transition(unit, new, decide, writes, Unit(), None,
                                           reads=[(memo, "")] if memo else [],
                                           decision=decision, fresh=True)
        return step, (values[0] if memo else "")

    def touch(self, unit: str, run_id: str, tries: int = 0) -> tuple[Step, str]:
        """A lockless stage begins (its message sent for try ``tries`` of the run); also
        the revision the run must serve now."""
        step, values, _ = self._transition(
            unit, run_id, lambda u, s, k: protocol.touch(u, run_id, s, _stale(s, k, tries)),
            self._superseded_writes(unit, run_id), Unit(queued=run_id), RunState.QUEUED,
            reads=[(keys.run(unit, run_id), "revision")], decision=_try_of(unit, run_id, tries))
        return step, values[0]

    def begin(self, unit: str, run_id: str, owner: str, cluster: str,
              park: dict[str, str] | None = None, taking_over: str = "",
              tries: int = 0) -> Begun:
        """Take the unit's lock for ``run_id`` (its message sent for try ``tries``); when
        busy, park it with ``park`` (how to send its apply stage again) for the holder to
        send when it ends."""
        def writes(step: Step, ops: Ops) -> None:
            self._superseded_writes(unit, run_id)(step, ops)
            if step.verdict == Verdict.BUSY and park:
                self._run_fields(ops, unit, run_id, **park)
            if step.verdict == Verdict.STARTED:
                ops.add("FENCE", keys.fence(unit))
                self._run_fields(ops, unit, run_id, state=RunState.RUNNING, owner=owner,
                                 started_at=repr(time.time()))
                # the record has its expiry from the request (or its last retry), and its
                # ending sets it again: no PEXPIRE for beginning
                ops.expiries.pop(keys.run(unit, run_id), None)
            if step.lost:
                self._run_fields(ops, unit, step.lost, state=RunState.DONE, phase=Phase.FAILED,
                                 summary="the worker running it was lost (its lock expired)")
        step, values, tokens = self._transition(
            unit, run_id, lambda u, s, k: protocol.begin(u, run_id, s, owner, taking_over,
                                                         _stale(s, k, tries)),
            writes,
            Unit(queued=run_id), RunState.QUEUED,
            reads=[(keys.cluster_down(cluster), "next_at"),
                   (keys.run(unit, run_id), "revision")], decision=_try_of(unit, run_id, tries))
        return Begun(step, tokens[0] if tokens else 0, float(values[0] or 0), values[1])

    def retry(self, unit: str, run_id: str, owner: str, *, countdown: float, tries: int,
              status: UnitStatus | None = None, revision: str = "") -> Step:
        """Queue the run again, as its try number ``tries`` (the message that carries it
        on says so); with ``revision``, it serves that revision from now on."""
        def writes(step: Step, ops: Ops) -> None:
            if step.verdict == Verdict.RETRY:
                self._run_fields(ops, unit, run_id, state=RunState.RETRYING, tries=tries,
                                 next_try_at=repr(time.time() + countdown),
                                 summary=status.message if status else "")
                if revision:
                    self._run_fields(ops, unit, run_id, revision=revision)
                ops.add("PEXPIRE", keys.queued(unit),
                        int(countdown * 1000) + self.timing.queued_ms)
                if status is not None:
                    status_ops(ops, status)
            self._superseded_writes(unit, run_id)(step, ops)
        return self._transition(unit, run_id,
                                lambda u, _, __: protocol.retry(u, run_id, owner), writes,
                                *self._holding(run_id, owner))[0]

    def end(self, unit: str, run_id: str, owner: str, outcome: Outcome, *,
            status: UnitStatus | None, entry: HistoryEntry | None) -> Step:
        """The run is over: its outcome written with the release, once (a run that is
        done already answers ``DUPLICATE`` and nothing is written)."""
        def writes(step: Step, ops: Ops) -> None:
            if step.verdict != Verdict.ENDED:
                return
            self._run_fields(ops, unit, run_id, state=RunState.DONE, phase=outcome.phase,
                             summary=outcome.summary, revision=outcome.revision,
                             finished_at=repr(time.time()),
                             result=json.dumps(outcome.result or {}, default=str),
                             lock_lost="1" if step.lock_lost else "")
            if status is not None:
                status_ops(ops, status)
            if entry is not None:
                entry.ops(ops, unit, self.timing.history_size)
        return self._transition(unit, run_id,
                                lambda u, s, __: protocol.end(u, run_id, owner, s), writes,
                                *self._holding(run_id, owner))[0]

    def settle(self, unit: str, run_id: str, status: UnitStatus,
               entry: HistoryEntry | None = None) -> bool:
        """A health follow-up's verdict on the outcome of run ``run_id``: written only if
        the unit's status is still that run's and still Progressing (a newer run, or a
        follow-up that got there first, wins). True when written."""
        ops = Ops()
        ops.expects(keys.status(unit), run_id, "run_id")
        ops.expects(keys.status(unit), Phase.PROGRESSING.value, "phase")
        status_ops(ops, status)
        if entry is not None:
            entry.ops(ops, unit, self.timing.history_size)
        result = self._call(lambda: self._cas(keys=ops.keys, args=ops.args()))
        return int(result[0]) == 1

    @staticmethod
    def _holding(run_id: str, owner: str) -> tuple[Unit, RunState]:
        """What an ending most likely finds: the run holding the lock, or still queued."""
        if owner:
            return Unit(running=run_id, lock=owner), RunState.RUNNING
        return Unit(queued=run_id), RunState.QUEUED

    # -- a lock outside runs (removal) ---------------------------------------------------
    def take_lock(self, unit: str, owner: str) -> bool:
        """The unit's lock for work that is no run (an application's removal): only when
        free, so it never overlaps a run."""
        return bool(self._call(lambda: self._leases.acquire(keys.lock(unit), owner,
                                                            self.timing.lock_ms)))

    def release_lock(self, unit: str, owner: str) -> None:
        self._call(lambda: self._leases.release(keys.lock(unit), owner))

    # -- fencing ----------------------------------------------------------------------
    def holding(self, unit: str, owner: str, token: int) -> bool:
        """Whether ``owner`` still holds the unit's lock with fencing token ``token``."""
        lock, fence = self._call(lambda: self.client.mget(keys.lock(unit), keys.fence(unit)))
        return lock == owner and str(fence or "") == str(token)

    def advance_fence(self, unit: str, owner: str, at_least: int) -> int:
        """Move the unit's token to ``at_least`` or past it, only while ``owner`` holds the
        lock (a flush or failover lost the counter; the cluster's inventory kept a higher
        one). The new token, or 0 when the lock is not ``owner``'s."""
        ops = Ops()
        ops.expects(keys.lock(unit), owner)
        ops.add("FENCE", keys.fence(unit), str(int(at_least)))
        result = self._call(lambda: self._cas(keys=ops.keys, args=ops.args()))
        return int(result[2][0]) if int(result[0]) == 1 else 0

    # -- reads -----------------------------------------------------------------------
    def run(self, unit: str, run_id: str) -> dict[str, str]:
        return self._call(lambda: self.client.hgetall(keys.run(unit, run_id)))

    def revision(self, unit: str, run_id: str) -> str:
        """The revision the run serves now (the newest request it joined): one read."""
        return self._call(lambda: self.client.hget(keys.run(unit, run_id), "revision")) or ""

    def unit(self, unit: str) -> Unit:
        values = self._call(lambda: self.client.mget(
            keys.queued(unit), keys.pending(unit), keys.running(unit), keys.lock(unit)))
        return Unit(*[v or "" for v in values])

    def renew(self, unit: str, owner: str) -> bool:
        """Renew ``owner``'s lock, and with it the markers of the run parked behind it
        (``protocol.hold``), in one compare-and-set: False when the lock is not ours."""
        names = dict(zip(("queued", "pending", "running", "lock"), keys.protocol(unit)))
        ttl = {"lock": self.timing.lock_ms, "pending": self.timing.queued_ms,
               "queued": self.timing.queued_ms}
        assumed = ["", "", owner]               # queued, pending, lock: nothing parked
        for _ in range(50):
            kept = protocol.hold(Unit(queued=assumed[0], pending=assumed[1],
                                      lock=assumed[2]), owner)
            if not kept:
                return False
            ops = Ops()
            for field, value in zip(("queued", "pending", "lock"), assumed):
                ops.expects(names[field], value)
            for field in kept:
                ops.add("PEXPIRE", names[field], ttl[field])
            result = self._call(lambda: self._cas(keys=ops.keys, args=ops.args()))
            if int(result[0]) == 1:
                return True
            assumed = list(result[1])
        raise TransientError(f"sync unit {unit}: too much contention on its protocol keys",
                             unit=unit)

    @contextmanager
    def renewing(self, unit: str, owner: str, on_lost: Callable[[], None]) -> Iterator[Lease]:
        """Renew the lock every third of its TTL while the block runs; ``on_lost`` is
        called (once) if a renewal finds the lock gone or Redis unreachable past the TTL.
        Yields the ``Lease``: until when (this host's monotonic clock) the lock is surely
        still ours, which a frozen or starved process finds passed when it wakes."""
        stop = threading.Event()
        period = self.timing.lock_ms / 3000
        ttl = self.timing.lock_ms / 1000
        lease = Lease(time.monotonic() + ttl * LEASE_SAFETY)

        def loop() -> None:
            while not stop.wait(period):
                asked = time.monotonic()
                try:
                    if not self.renew(unit, owner):
                        lease.valid_until = 0.0
                        on_lost()
                        return
                    lease.valid_until = asked + ttl * LEASE_SAFETY
                except TransientError:
                    if time.monotonic() > lease.valid_until:
                        on_lost()
                        return

        thread = threading.Thread(target=loop, name=f"renew {unit}", daemon=True)
        thread.start()
        try:
            yield lease
        finally:
            stop.set()
            thread.join(timeout=5)

    # -- machinery ---------------------------------------------------------------------
    def _run_fields(self, ops: Ops, unit: str, run_id: str, /, **fields: Any) -> None:
        values = {k: str(v) for k, v in fields.items()}
        ops.add("HSET", keys.run(unit, run_id), *[x for kv in values.items() for x in kv])
        ops.add("PEXPIRE", keys.run(unit, run_id), self.timing.run_ms)

    def _superseded_writes(self, unit: str, run_id: str) -> Callable[[Step, Ops], None]:
        def writes(step: Step, ops: Ops) -> None:
            if step.verdict == Verdict.SUPERSEDED:
                self._run_fields(ops, unit, run_id, state=RunState.DONE, superseded_by=step.other,
                                 summary=f"superseded by run {step.other}")
        return writes

    def _transition(self, unit: str, run_id: str,
                    decide: Callable[[Unit, RunState | None, list[str]], Step],
                    writes: Callable[[Step, Ops], None], guess: Unit,
                    guess_state: RunState | None, *, reads: Sequence[tuple[str, str]] = (),
                    decision: Sequence[tuple[str, str, str]] = (), fresh: bool = False
                    ) -> tuple[Step, list[str], list[int]]:
        """Decide on an assumed snapshot (``guess``: what the unit usually looks like at
        this point) and write if Redis agrees; else decide again on what Redis answered.
        One round trip in the usual case. ``decision`` are further values the decision
        depends on (key, field, assumed value); ``reads`` are only read, after the check.
        ``fresh``: ``run_id`` was drawn just now, so its record cannot exist (not read).
        The run's state is written only when it changes (its record's expiry with it)."""
        names = keys.protocol(unit)
        assumed = [guess.queued, guess.pending, guess.running, guess.lock,
                   guess_state.value if guess_state else "", *[d[2] for d in decision]]
        for _ in range(50):
            before = Unit(*assumed[:4])
            step = decide(before, RunState(assumed[4]) if assumed[4] else None, assumed[5:])
            ops = Ops()
            for key, value in zip(names, assumed[:4]):
                ops.expects(key, value)
            if not fresh:
                ops.expects(keys.run(unit, run_id), assumed[4], "state")
            for (key, field, _), value in zip(decision, assumed[5:]):
                ops.expects(key, value, field)
            for key, field in reads:
                ops.read(key, field)
            self._unit_writes(ops, unit, step, before)
            if step.run_state is not None and step.verdict != Verdict.SUPERSEDED \
                    and step.run_state.value != assumed[4]:
                self._run_fields(ops, unit, run_id, state=step.run_state)
            writes(step, ops)
            result = self._call(lambda: self._cas(keys=ops.keys, args=ops.args()))
            if int(result[0]) == 1:
                return step, list(result[1]), [int(t) for t in result[2]]
            assumed = list(result[1])
            if fresh:
                assumed[4:4] = [""]
        raise TransientError(f"sync unit {unit}: too much contention on its protocol keys",
                             unit=unit)

    def _unit_writes(self, ops: Ops, unit: str, step: Step, before: Unit) -> None:
        after = step.unit
        # a joined run keeps its deadline: a run that was lost must not be kept alive
        if after.queued != before.queued or (after.queued and step.verdict in REFRESH):
            ops.put(keys.queued(unit), after.queued, self.timing.queued_ms)
        if after.pending != before.pending:
            ops.put(keys.pending(unit), after.pending, self.timing.queued_ms)
        if after.running != before.running:
            ops.put(keys.running(unit), after.running)
        if after.lock != before.lock:
            ops.put(keys.lock(unit), after.lock, self.timing.lock_ms)

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.RedisError as exc:
            raise TransientError(f"Redis: {type(exc).__name__}: {exc}") from exc
