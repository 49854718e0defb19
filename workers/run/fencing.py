"""Never write with a stale lock: the apply stage's fence, and the fencing token's recovery.

Before each tier of writes the run asks Redis whether it still holds the unit's lock with its
token; before each single write it looks at its lease clock (no round trip), so a process
frozen past the lock's TTL writes nothing more when it wakes (``LockLost``: the run is
retried). When the cluster's inventory holds a higher token than Redis (a flush or a failover
lost the counter), the lock holder moves the counter past it and goes on.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

from shared.errors import LockLost, StaleInventory
from shared.logs import get_logger
from shared.protocol import Trigger
from shared.state.runs import Lease
from workers.run import stages
from workers.apply.execute import Fence
from workers.context import Context
from workers.run.stages import Unit
from workers.run.steps import Call

log = get_logger("fleetsync.fencing")
ON_DEMAND = (Trigger.CLI.value, Trigger.API.value)   # a sync asked for: drift: detect corrects


class RunFence(Fence):
    """The apply's fence: before each tier of writes the run asks Redis whether it still
    holds the unit's lock with its token; before each single write it looks at its lease
    clock (no round trip), so a process frozen past the lock's TTL (SIGSTOP, a long GC,
    a starved host) writes nothing more when it wakes."""

    def __init__(self, ctx: Context, unit: str, owner: str, token: int, lease: Lease,
                 lost: threading.Event) -> None:
        self.ctx, self.unit, self.owner, self.token = ctx, unit, owner, token
        self.lease, self.lost = lease, lost

    def tier(self) -> None:
        self.write()
        if not self.ctx.runs.holding(self.unit, self.owner, self.token):
            self._stop("is no longer this run's")

    def write(self) -> None:
        if self.lost.is_set() or not self.lease.holds():
            self._stop("may have expired (its lease was not renewed in time)")

    def _stop(self, why: str) -> None:
        self.lost.set()
        raise LockLost(f"the lock of {self.unit} {why} (token {self.token}): stopped "
                       "before the next write", unit=self.unit)

    def moved_to(self, token: int) -> "RunFence":
        return RunFence(self.ctx, self.unit, self.owner, token, self.lease, self.lost)


def apply_fenced(ctx: Context, call: Call, unit: Unit, objects: list[dict],
                 fence: RunFence, detect_only: bool = False) -> Any:
    """The apply, fenced (``RunFence``). When the cluster's inventory holds a higher token
    than Redis (Redis was flushed or failed over and lost the counter), the lock holder
    moves the counter past it and goes on. ``detect_only`` (a change window that says
    ``drift: detect`` holds the unit): the application's ``drift: detect`` mode, whatever
    the spec and the trigger say."""
    app = replace(unit.app, drift="detect") if detect_only else unit.app
    try:
        return stages.apply_objects(ctx, app, unit.cluster, objects, call.revision,
                                    fence.token, fence,
                                    correct=call.trigger in ON_DEMAND and not detect_only,
                                    rules=stages.health_rules(unit.fleet, unit.app))
    except StaleInventory as exc:
        newer = ctx.runs.advance_fence(call.unit, fence.owner, exc.stored_token + 1)
        if not newer:
            raise
        log.warning("fencing token moved past the cluster's inventory", before=fence.token,
                    after=newer, inventory=exc.stored_token)
        return apply_fenced(ctx, call, unit, objects, fence.moved_to(newer), detect_only)
