"""What operators do to rollouts and suspensions, for the CLI and the server alike.

``fleetsync rollout status|pause|resume|promote|abort APP`` and ``fleetsync
suspend|resume APP [--cluster C]`` (and the same POSTs of ``fleetsync server``)
change the application's record in Redis (``shared/state/rollout_store.py``) and then
enqueue ``fleetsync.sync`` of the application, so that every unit is requested
now and obeys the change (a promoted wave starts, an aborted rollout goes back,
a resumed unit syncs) instead of at its next tick. Nothing here imports worker
code: the workers evaluate the record where each request decides its revision.

Every action is audited here, so the CLI and the server record it alike
(``audit``): one entry in the history of each unit it concerns (result
``Operator``, with who, what and why) and one JSON line ``"event": "audit"``
in the structured log (who, what, which units, why, and how: ``cli``, ``api``
or ``dashboard``), which a log pipeline keeps beyond Redis.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Callable

from shared import rollout, tasks_api
from shared.logs import get_logger
from shared.protocol import Trigger
from shared.rollout import Record
from shared.state import keys
from shared.state.rollout_store import Holds
from shared.spec.model import Fleet
from shared.spec.rollout import describe, fleet_waves
from shared.state.status import now_iso

Send = Callable[[str, list[Any], dict[str, Any]], str]      # name, args, kwargs -> task id
audit_log = get_logger("fleetsync.audit")
MAX_REASON = 500                # characters of a manual sync's reason


class HoldError(ValueError):
    """An operator's request that cannot be done (unknown app, nothing to promote...)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class Operator:
    """One caller's actions: ``via`` says how they came (``cli``, ``api``, ``dashboard``)."""

    def __init__(self, client: Any, fleet: Fleet | None, send: Send, *, via: str = "cli",
                 history_size: int = 50) -> None:
        self.holds = Holds(client)
        self.client = client
        self.fleet = fleet
        self.send = send
        self.via = via
        self.history_size = history_size

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
        self.audit(by, "rollout pause", app, None)
        return self.status(app)

    def resume_rollout(self, app: str, by: str) -> dict[str, Any]:
        self._plans(app)
        self.holds.change(app, lambda r: rollout.resume(r, by))
        return self._audited(by, "rollout resume", app, None, self._synced(app, None))

    def promote(self, app: str, by: str, wave: int | None = None) -> dict[str, Any]:
        count = len(self._plans(app))
        self._change(app, lambda r: rollout.promote(r, count, by, wave))
        return self._audited(by, "rollout promote", app, None, self._synced(app, None),
                             wave=wave)

    def abort(self, app: str, by: str) -> dict[str, Any]:
        count = len(self._plans(app))
        self._change(app, lambda r: rollout.abort(r, count, by))
        return self._audited(by, "rollout abort", app, None, self._synced(app, None))

    # -- suspensions -----------------------------------------------------------------------
    def suspend(self, app: str, cluster: str | None, by: str) -> dict[str, Any]:
        self._unit(app, cluster)
        held = self.holds.suspend(app, cluster, by)
        self.audit(by, "suspend", app, cluster)
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
        out = self._audited(by, "resume", app, cluster,
                            self._synced(app, cluster, Trigger.CLI.value))
        return {"app": app, "cluster": cluster, "resumed_by": by,
                "lifted": [vars(s) for s in lifted], "task_id": out.get("task_id", "")}

    # -- syncs -------------------------------------------------------------------------------
    def sync(self, app: str, cluster: str | None, by: str, reason: str = "") -> str:
        """Enqueue ``fleetsync.sync`` of the unit (or the application); its task id. A
        ``reason`` (a manual sync through a closed window) is sent with ``by``."""
        self._unit(app, cluster)
        if len(reason) > MAX_REASON:
            raise HoldError(f"the reason is longer than {MAX_REASON} characters", 400)
        kwargs: dict[str, Any] = {"trigger": Trigger.API.value}
        if reason:
            kwargs.update(reason=reason, by=by)
        task_id = self.send(tasks_api.SYNC, [app, cluster], kwargs)
        self.audit(by, "sync", app, cluster, reason, task_id=task_id)
        return task_id

    # -- the audit ---------------------------------------------------------------------------
    def audit(self, who: str, what: str, app: str, cluster: str | None, why: str = "",
              **detail: Any) -> None:
        """One history entry per unit concerned and one ``audit`` line in the log."""
        units = self._units_of(app, cluster)
        audit_log.info("audit", who=who, what=what, app=app, cluster=cluster,
                       units=[f"{c}/{a}" for a, c in units], why=why, via=self.via, **detail)
        stamp = now_iso()
        message = f"{what} by {who} ({self.via})" + (f": {why}" if why else "")
        entry = json.dumps({"revision": "", "trigger": self.via, "result": "Operator",
                            "message": message, "started_at": stamp, "finished_at": stamp,
                            "run_id": "", "task_id": str(detail.get("task_id", "")),
                            "changes": {}, "by": who, "action": what, "reason": why})
        pipe = self.client.pipeline(transaction=False)
        for a, c in units:
            pipe.lpush(keys.history(keys.unit_id(a, c)), entry)
            pipe.ltrim(keys.history(keys.unit_id(a, c)), 0, self.history_size - 1)
        pipe.execute()

    def _audited(self, who: str, what: str, app: str, cluster: str | None,
                 out: dict[str, Any], **detail: Any) -> dict[str, Any]:
        self.audit(who, what, app, cluster, task_id=out.get("task_id", ""), **detail)
        return out

    def _units_of(self, app: str, cluster: str | None) -> list[tuple[str, str]]:
        if self.fleet is None:
            return [(app, cluster)] if cluster else []
        return [(a, c) for a, c in self.fleet.units()
                if a == app and (cluster is None or c == cluster)]

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
