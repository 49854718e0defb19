"""What operators do to rollouts and suspensions, for the CLI and the server alike.

``fleetsync rollout status|pause|resume|promote|abort APP`` and ``fleetsync
suspend|resume APP [--cluster C]`` (and the same POSTs of ``fleetsync server``)
change the application's record in Redis (``shared/state/rollout_store.py``) and then
enqueue ``fleetsync.sync`` of the application, so that every unit is requested
now and obeys the change (a promoted wave starts, an aborted rollout goes back,
a resumed unit syncs) instead of at its next tick. Nothing here imports worker
code: the workers evaluate the record where each request decides its revision.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from shared import rollout, tasks_api
from shared.protocol import Trigger
from shared.rollout import Record
from shared.state.rollout_store import Holds
from shared.spec.model import Fleet
from shared.spec.rollout import describe, fleet_waves
from shared.state.status import now_iso

Send = Callable[[str, list[Any], dict[str, Any]], str]      # name, args, kwargs -> task id


class HoldError(ValueError):
    """An operator's request that cannot be done (unknown app, nothing to promote...)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class Operator:
    def __init__(self, client: Any, fleet: Fleet | None, send: Send) -> None:
        self.holds = Holds(client)
        self.client = client
        self.fleet = fleet
        self.send = send

    # -- rollouts --------------------------------------------------------------------------
    def status(self, app: str) -> dict[str, Any]:
        """Where the rollout stands: its state, revisions, waves with each cluster's allowed
        and current revision, and its recent events."""
        plans = self._plans(app)
        record = self.holds.record(app)
        statuses = self.holds.statuses(app, [c for p in plans for c in p.clusters])
        waves = []
        for i, wave in enumerate(describe(plans)):
            wave["state"] = ("done" if i < record.wave else "current" if i == record.wave
                             else "waiting")
            wave["clusters"] = [{"cluster": c, "allowed": rollout.allowed(record, c),
                                 "phase": statuses[c].phase if c in statuses else "Unknown",
                                 "revision": statuses[c].revision if c in statuses else ""}
                                for c in wave["clusters"]]
            waves.append(wave)
        return {"app": app, "state": rollout.state_of(record, len(plans)) if record.target
                else "NotStarted", "target": record.target, "stable": record.stable,
                "wave": min(record.wave + 1, len(plans)) if record.target else 0,
                "waves": waves, "halted": record.halted, "paused": record.paused,
                "aborted": record.aborted, "urgent": record.urgent,
                "events": [{"at": _iso(e.get("at", 0)), "message": e.get("message", "")}
                           for e in record.events],
                "suspensions": [vars(s) for s in self.holds.suspensions(app)]}

    def pause(self, app: str, by: str) -> dict[str, Any]:
        self._plans(app)
        self.holds.change(app, lambda r: rollout.pause(r, by, now_iso()))
        return self.status(app)

    def resume_rollout(self, app: str, by: str) -> dict[str, Any]:
        self._plans(app)
        self.holds.change(app, lambda r: rollout.resume(r, by))
        return self._synced(app, None)

    def promote(self, app: str, by: str, wave: int | None = None) -> dict[str, Any]:
        count = len(self._plans(app))
        self._change(app, lambda r: rollout.promote(r, count, by, wave))
        return self._synced(app, None)

    def abort(self, app: str, by: str) -> dict[str, Any]:
        count = len(self._plans(app))
        self._change(app, lambda r: rollout.abort(r, count, by))
        return self._synced(app, None)

    # -- suspensions -----------------------------------------------------------------------
    def suspend(self, app: str, cluster: str | None, by: str) -> dict[str, Any]:
        self._unit(app, cluster)
        held = self.holds.suspend(app, cluster, by)
        return {"app": app, "cluster": cluster, "suspended": vars(held),
                "message": held.message()}

    def resume(self, app: str, cluster: str | None, by: str) -> dict[str, Any]:
        self._unit(app, cluster)
        try:
            lifted = self.holds.resume(app, cluster)
        except ValueError as exc:
            raise HoldError(str(exc)) from exc
        if not lifted:
            raise HoldError(f"{app}{' on ' + cluster if cluster else ''} is not suspended "
                            "(with fleetsync suspend; suspend: true in the spec stays)")
        out = self._synced(app, cluster, Trigger.CLI.value)
        return {"app": app, "cluster": cluster, "resumed_by": by,
                "lifted": [vars(s) for s in lifted], "task_id": out.get("task_id", "")}

    # -- machinery -------------------------------------------------------------------------
    def _change(self, app: str, fn: Callable[[Record], Record]) -> None:
        try:
            self.holds.change(app, fn)
        except ValueError as exc:
            raise HoldError(f"{app}: {exc}") from exc

    def _synced(self, app: str, cluster: str | None,
                trigger: str = Trigger.ROLLOUT.value) -> dict[str, Any]:
        task_id = self.send(tasks_api.SYNC, [app, cluster], {"trigger": trigger})
        found = self.status(app) if self._rolls_out(app) else {"app": app}
        return {**found, "task_id": task_id}

    def _rolls_out(self, app: str) -> bool:
        return bool(self.fleet and app in self.fleet.applications
                    and self.fleet.applications[app].rollout is not None)

    def _plans(self, app: str) -> list[rollout.WavePlan]:
        if self.fleet is None:
            raise HoldError("no valid fleet spec to read the application's waves from", 503)
        if app not in self.fleet.applications:
            raise HoldError(f"no application named {app!r} in the fleet spec", 404)
        application = self.fleet.applications[app]
        if application.rollout is None:
            raise HoldError(f"application {app!r} has no rollout: in the fleet spec (every "
                            "cluster gets each revision at once)", 404)
        return fleet_waves(self.fleet, application)

    def _unit(self, app: str, cluster: str | None) -> None:
        if self.fleet is None:
            raise HoldError("no valid fleet spec", 503)
        if app not in self.fleet.applications:
            raise HoldError(f"no application named {app!r} in the fleet spec", 404)
        if cluster is not None and (app, cluster) not in set(self.fleet.units()):
            raise HoldError(f"application {app!r} does not target a cluster named "
                            f"{cluster!r}", 404)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds") \
        .replace("+00:00", "Z") if at else ""
