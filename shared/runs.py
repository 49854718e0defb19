"""The Redis adapter of the sync-unit protocol: runs, locks, outcomes.

Each transition of ``shared/protocol.py`` is carried out in two commands: one
script reads the unit's snapshot (queued, pending, running, lock, and the run's
state), the pure function decides, and a second script writes the decision only
if the snapshot is still the same (compare-and-set; on a race the transition is
decided again). The rules stay in Python; the Lua below is a dumb, generic
compare-and-set. The writes of an ending carry the outcome too (run record,
unit status, history), so a run can never end without its outcome recorded.

Redis errors become ``TransientError`` here (a Redis restart is a blip; the
task is retried). Fencing tokens come from the Redis server's clock and never
go backwards per unit, so they survive a flush (the inventory refuses smaller).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import redis

from shared import keys, protocol
from shared.errors import TransientError
from shared.locks import Leases
from shared.protocol import Phase, RunState, Step, Unit, Verdict
from shared.status import HistoryEntry, UnitStatus, status_ops

_READ = """
local out = {}
for i, r in ipairs(cjson.decode(ARGV[1])) do
  local v
  if r[2] == '' then v = redis.call('GET', KEYS[r[1]]) else v = redis.call('HGET', KEYS[r[1]], r[2]) end
  out[i] = v or ''
end
return out
"""

# Compare, then write. Only the commands listed may be written; FENCE draws a token.
_CAS = """
for _, e in ipairs(cjson.decode(ARGV[1])) do
  local v
  if e[2] == '' then v = redis.call('GET', KEYS[e[1]]) else v = redis.call('HGET', KEYS[e[1]], e[2]) end
  if (v or '') ~= e[3] then return {0} end
end
local allowed = {SET=1, DEL=1, HSET=1, PEXPIRE=1, LPUSH=1, LTRIM=1, SADD=1, SREM=1}
local out = {1}
for _, op in ipairs(cjson.decode(ARGV[2])) do
  local cmd, key = op[1], KEYS[op[2]]
  if cmd == 'FENCE' then
    local t = redis.call('TIME')
    local token = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local last = tonumber(redis.call('GET', key) or '0')
    if token <= last then token = last + 1 end
    redis.call('SET', key, string.format('%d', token))
    out[#out + 1] = string.format('%d', token)
  elseif allowed[cmd] then
    local args = {}
    for i = 3, #op do args[#args + 1] = op[i] end
    redis.call(cmd, key, unpack(args))
  else
    return redis.error_reply('command not allowed: ' .. cmd)
  end
end
return out
"""


REFRESH = (Verdict.GO, Verdict.BUSY)


class Ops:
    """Writes for the compare-and-set script, keys by name."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.expect: list[list[Any]] = []
        self.ops: list[list[Any]] = []

    def _k(self, key: str) -> int:
        if key not in self.keys:
            self.keys.append(key)
        return self.keys.index(key) + 1

    def expects(self, key: str, value: str, field: str = "") -> None:
        self.expect.append([self._k(key), field, value])

    def add(self, cmd: str, key: str, *args: Any) -> None:
        self.ops.append([cmd, self._k(key), *[str(a) for a in args]])

    def put(self, key: str, value: str, ttl_ms: int = 0) -> None:
        """SET (or DEL when empty), with a TTL when given."""
        if not value:
            self.add("DEL", key)
        elif ttl_ms:
            self.add("SET", key, value, "PX", ttl_ms)
        else:
            self.add("SET", key, value)


@dataclass(frozen=True)
class Timing:
    lock_ms: int = 60_000           # a unit's lock lives this long unless renewed
    queued_ms: int = 180_000        # a queued run that never begins is given up after this
    run_ms: int = 6 * 3600_000      # run records are kept this long for waiters
    history_size: int = 50


@dataclass(frozen=True)
class Begun:
    step: Step
    token: int = 0
    failed_key: str = ""            # the unit's (revision:spec) that failed permanently
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


class Runs:
    """The protocol on one decoded Redis client (real, or fakeredis for ``--local``)."""

    def __init__(self, client: Any, timing: Timing = Timing()) -> None:
        self.client = client
        self.timing = timing
        self._read = client.register_script(_READ)
        self._cas = client.register_script(_CAS)
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
                self._run_fields(ops, new, state=RunState.QUEUED, unit=unit, app=app,
                                 cluster=cluster, trigger=trigger, revision=revision,
                                 requested_at=repr(requested_at or time.time()))
            elif step.verdict != Verdict.SKIPPED and revision:
                self._run_fields(ops, step.other, revision=revision)   # it serves the newest

        def decide(u: Unit, _: RunState | None, extra: list[str]) -> Step:
            return protocol.request(u, new, known_failure=bool(failed_key)
                                    and extra[0] == failed_key)
        reads = [(keys.status(unit), "failed_key"), (memo or keys.status(unit), "" if memo
                                                     else "phase")]
        step, extra = self._transition_with(unit, new, decide, writes, reads, [])
        return step, (extra[1] if memo else "")

    def touch(self, unit: str, run_id: str) -> tuple[Step, str]:
        """A lockless stage begins; also the revision the run must serve now."""
        step, extra = self._transition_with(
            unit, run_id, lambda u, s, _: protocol.touch(u, run_id, s),
            self._superseded_writes(run_id), [(keys.run(run_id), "revision")], [])
        return step, extra[0]

    def begin(self, unit: str, run_id: str, owner: str, cluster: str,
              park: dict[str, str] | None = None) -> Begun:
        """Take the unit's lock for ``run_id``; when busy, park it with ``park`` (how to
        send its apply stage again) for the holder to send when it ends."""
        tokens: list[int] = []
        extra = [(keys.status(unit), "failed_key"), (keys.cluster_down(cluster), "next_at"),
                 (keys.run(run_id), "revision")]

        def writes(step: Step, ops: Ops) -> None:
            self._superseded_writes(run_id)(step, ops)
            if step.verdict == Verdict.BUSY and park:
                self._run_fields(ops, run_id, **park)
            if step.verdict == Verdict.STARTED:
                ops.add("FENCE", keys.fence(unit))
                self._run_fields(ops, run_id, state=RunState.RUNNING, owner=owner,
                                 started_at=repr(time.time()))
            if step.lost:
                self._run_fields(ops, step.lost, state=RunState.DONE, phase=Phase.FAILED,
                                 summary="the worker running it was lost (its lock expired)")
        step, extra_values = self._transition_with(
            unit, run_id, lambda u, s, _: protocol.begin(u, run_id, s, owner), writes, extra,
            tokens)
        return Begun(step, tokens[0] if tokens else 0, extra_values[0],
                     float(extra_values[1] or 0), extra_values[2])

    def retry(self, unit: str, run_id: str, owner: str, *, countdown: float,
              status: UnitStatus | None = None) -> Step:
        def writes(step: Step, ops: Ops) -> None:
            if step.verdict == Verdict.RETRY:
                self._run_fields(ops, run_id, state=RunState.RETRYING,
                                 next_try_at=repr(time.time() + countdown),
                                 summary=status.message if status else "")
                ops.add("PEXPIRE", keys.queued(unit),
                        int(countdown * 1000) + self.timing.queued_ms)
                if status is not None:
                    status_ops(ops, status)
            self._superseded_writes(run_id)(step, ops)
        return self._transition(unit, run_id, lambda u, _: protocol.retry(u, run_id, owner),
                                writes)

    def end(self, unit: str, run_id: str, owner: str, outcome: Outcome, *,
            status: UnitStatus | None, entry: HistoryEntry | None) -> Step:
        def writes(step: Step, ops: Ops) -> None:
            self._run_fields(ops, run_id, state=RunState.DONE, phase=outcome.phase,
                             summary=outcome.summary, revision=outcome.revision,
                             finished_at=repr(time.time()),
                             result=json.dumps(outcome.result or {}, default=str),
                             lock_lost="1" if step.lock_lost else "")
            if status is not None:
                status_ops(ops, status)
            if entry is not None:
                entry.ops(ops, unit, self.timing.history_size)
        return self._transition(unit, run_id, lambda u, _: protocol.end(u, run_id, owner),
                                writes)

    # -- reads -----------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, str]:
        return self._call(lambda: self.client.hgetall(keys.run(run_id)))

    def unit(self, unit: str) -> Unit:
        values = self._call(lambda: self.client.mget(
            keys.queued(unit), keys.pending(unit), keys.running(unit), keys.lock(unit)))
        return Unit(*[v or "" for v in values])

    def lock_ttl_ms(self, unit: str) -> int:
        return int(self._call(lambda: self.client.pttl(keys.lock(unit))))

    def renew(self, unit: str, owner: str) -> bool:
        return bool(self._call(lambda: self._leases.renew(keys.lock(unit), owner,
                                                          self.timing.lock_ms)))

    @contextmanager
    def renewing(self, unit: str, owner: str, on_lost: Callable[[], None]) -> Iterator[None]:
        """Renew the lock every third of its TTL while the block runs; ``on_lost`` is
        called (once) if a renewal finds the lock gone or Redis unreachable past the TTL."""
        stop = threading.Event()
        period = self.timing.lock_ms / 3000

        def loop() -> None:
            last_ok = time.monotonic()
            while not stop.wait(period):
                try:
                    if not self.renew(unit, owner):
                        on_lost()
                        return
                    last_ok = time.monotonic()
                except TransientError:
                    if time.monotonic() - last_ok > self.timing.lock_ms / 1000:
                        on_lost()
                        return

        thread = threading.Thread(target=loop, name=f"renew {unit}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    # -- machinery ---------------------------------------------------------------------
    def _run_fields(self, ops: Ops, run_id: str, **fields: Any) -> None:
        values = {k: str(v) for k, v in fields.items()}
        ops.add("HSET", keys.run(run_id), *[x for kv in values.items() for x in kv])
        ops.add("PEXPIRE", keys.run(run_id), self.timing.run_ms)

    def _superseded_writes(self, run_id: str) -> Callable[[Step, Ops], None]:
        def writes(step: Step, ops: Ops) -> None:
            if step.verdict == Verdict.SUPERSEDED:
                self._run_fields(ops, run_id, state=RunState.DONE, superseded_by=step.other,
                                 summary=f"superseded by run {step.other}")
        return writes

    def _transition(self, unit: str, run_id: str,
                    decide: Callable[[Unit, RunState | None], Step],
                    writes: Callable[[Step, Ops], None]) -> Step:
        return self._transition_with(unit, run_id, lambda u, s, _: decide(u, s), writes,
                                     [], [])[0]

    def _transition_with(self, unit: str, run_id: str,
                         decide: Callable[[Unit, RunState | None, list[str]], Step],
                         writes: Callable[[Step, Ops], None], extra: list[tuple[str, str]],
                         tokens: list[int]) -> tuple[Step, list[str]]:
        names = [keys.queued(unit), keys.pending(unit), keys.running(unit), keys.lock(unit)]
        reads = [(k, "") for k in names] + [(keys.run(run_id), "state")] + extra
        all_keys = list(dict.fromkeys(k for k, _ in reads))
        spec = json.dumps([[all_keys.index(k) + 1, f] for k, f in reads])
        for _ in range(50):
            values = self._call(lambda: self._read(keys=all_keys, args=[spec]))
            before = Unit(*values[:4])
            state = RunState(values[4]) if values[4] else None
            step = decide(before, state, list(values[5:]))
            ops = Ops()
            for key, value in zip(names, values[:4]):
                ops.expects(key, value)
            ops.expects(keys.run(run_id), values[4], "state")
            self._unit_writes(ops, unit, step, before)
            if step.run_state is not None and step.verdict not in (Verdict.SUPERSEDED,):
                self._run_fields(ops, run_id, state=step.run_state)
            writes(step, ops)
            result = self._call(lambda: self._cas(keys=ops.keys,
                                                  args=[json.dumps(ops.expect),
                                                        json.dumps(ops.ops)]))
            if int(result[0]) == 1:
                tokens.extend(int(t) for t in result[1:])
                return step, list(values[5:])
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
