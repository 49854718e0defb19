"""Operators' holds on applications, kept in Redis: rollout records and suspensions.

Both the workers (which obey them where a request decides what a run does) and
the scheduler side (``fleetsync rollout ...``, ``fleetsync suspend``, the
server's API, which change them) use this module, so neither imports the other.

A rollout record is one JSON string per application (``keys.rollout``). Several
workers may evaluate it at once, and an operator may pause it meanwhile, so
every change is optimistic: WATCH the key, read it, decide (``shared/rollout.py``),
and write in MULTI only if nobody wrote it in between; otherwise decide again.
Unit statuses are read in the same pass but not watched: they only ever move a
rollout forward, and the next evaluation sees what this one missed.

Like all of Redis here, these are not durable truth: after a wipe a rollout
starts from the unit statuses the next runs write, and suspensions are lifted
(``suspend: true`` in the fleet spec is the durable way).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import redis

from shared.state import keys
from shared.errors import TransientError
from shared.rollout import Decision, Record, Seen, WavePlan, allowed, decide
from shared.state.status import now_iso

WHOLE_APP = "*"
MAX_TRIES = 50


@dataclass(frozen=True)
class Suspension:
    """A unit held without editing the spec: by whom and when (``cluster`` "": the whole
    application)."""

    app: str
    cluster: str
    by: str
    at: str

    def message(self) -> str:
        what = "application" if not self.cluster else "unit"
        return f"suspended by {self.by} at {self.at} (fleetsync suspend, this {what}); " \
               f"fleetsync resume {self.app}{' --cluster ' + self.cluster if self.cluster else ''}"


class Holds:
    """Rollout records and suspensions on one decoded Redis client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    # -- rollouts -----------------------------------------------------------------------
    def record(self, app: str) -> Record:
        return Record.from_json(self.client.get(keys.rollout(app)))

    def statuses(self, app: str, clusters: Iterable[str]) -> dict[str, Seen]:
        names = list(clusters)
        pipe = self.client.pipeline(transaction=False)
        for cluster in names:
            pipe.hmget(keys.status(keys.unit_id(app, cluster)), "phase", "revision", "message")
        out = {}
        for cluster, (phase, revision, message) in zip(names, pipe.execute()):
            if phase:
                out[cluster] = Seen(phase, revision or "", message or "")
        return out

    def change(self, app: str, fn: Callable[[Record], Record]) -> Record:
        """Apply ``fn`` to the record atomically (it may run more than once); the new one."""
        return self._cas(app, lambda record: (fn(record), None))[0]

    def evaluate(self, app: str, plans: list[WavePlan], head: str, *, revert: bool = False,
                 urgent_on_revert: bool = False, now: float | None = None,
                 held: Callable[[str], bool] = lambda _: False) -> Decision:
        """Decide where the rollout of ``head`` stands and save the record if it moved.
        Nothing to decide (the head's rollout is over, halted, or paused and not promoted)
        reads no status. ``held``: a change window holds that cluster's unit now."""
        clusters = [c for p in plans for c in p.clusters]

        def fn(record: Record) -> tuple[Record, Decision]:
            if record.target and head in (record.target, record.aborted) and (
                    record.wave >= len(plans) or record.halted
                    or record.paused and record.promoted < record.wave):
                return record, Decision(record, {c: allowed(record, c) for c in clusters})
            found = decide(plans, record, head, self.statuses(app, clusters),
                           time.time() if now is None else now, revert=revert,
                           urgent_on_revert=urgent_on_revert, held=held)
            return found.record, found
        _, decision = self._cas(app, fn)
        assert decision is not None
        return decision

    def _cas(self, app: str, fn: Callable[[Record], tuple[Record, Any]]) -> tuple[Record, Any]:
        key = keys.rollout(app)
        with self.client.pipeline() as pipe:
            for _ in range(MAX_TRIES):
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    before = Record.from_json(raw)
                    after, extra = fn(before)
                    text = after.to_json()
                    if raw and text == raw or not raw and after == Record():
                        pipe.unwatch()
                        return after, extra
                    pipe.multi()
                    pipe.set(key, text)
                    pipe.execute()
                    return after, extra
                except redis.WatchError:
                    continue
        raise TransientError(f"rollout of {app}: too much contention on {key}")

    # -- suspensions --------------------------------------------------------------------
    def suspend(self, app: str, cluster: str | None, by: str) -> Suspension:
        found = Suspension(app, cluster or "", by, now_iso())
        self.client.hset(keys.suspended(app), cluster or WHOLE_APP,
                         json.dumps({"by": by, "at": found.at}))
        return found

    def resume(self, app: str, cluster: str | None) -> list[Suspension]:
        """Lift the application's suspension (every one of it), or one cluster's; what was
        lifted. A cluster of a suspended application cannot be resumed alone."""
        held = self.suspensions(app)
        if cluster is None:
            self.client.delete(keys.suspended(app))
            return held
        if any(not s.cluster for s in held):
            raise ValueError(f"application {app} is suspended as a whole: resume it without "
                             f"--cluster (then suspend the clusters to keep held)")
        self.client.hdel(keys.suspended(app), cluster)
        return [s for s in held if s.cluster == cluster]

    def suspension(self, app: str, cluster: str) -> Suspension | None:
        """The hold on the unit: the application's, else the cluster's; None when free."""
        whole, own = self.client.hmget(keys.suspended(app), WHOLE_APP, cluster)
        for raw, name in ((whole, ""), (own, cluster)):
            if raw:
                data = json.loads(raw)
                return Suspension(app, name, str(data.get("by", "?")), str(data.get("at", "")))
        return None

    def suspensions(self, app: str) -> list[Suspension]:
        out = []
        for name, raw in sorted(self.client.hgetall(keys.suspended(app)).items()):
            data = json.loads(raw)
            out.append(Suspension(app, "" if name == WHOLE_APP else name,
                                  str(data.get("by", "?")), str(data.get("at", ""))))
        return out
