"""The no-op pass of one cluster, in bulk: units in sync need no run of their own.

Most ticks change nothing. Rather than one run per unit (request, lock, N+1 reads,
outcome), ``reconcile_cluster`` first asks this module which of the cluster's units
are quiet, with a handful of reads for all of them:

    statuses (read by the caller) --> units Ready at the revision and spec they would
        sync to, no run queued, parked or running, not suspended, render cached
        (one MGET and one HMGET per unit, pipelined; the render entries in one MGET)
    --> one labelled LIST per kind and one of the inventories (``apply/snapshot``)
    --> ``engine.judge`` per unit (the engine's own observe and plan, no request)
    --> quiet units: status refreshed (synced and succeeded now, every object
        unchanged) by a compare-and-set that holds only if no run began since and the
        status is the one read.

Everything else gets a run as before: a unit that drifted, is missing an object,
unhealthy, mid-rollout, suspended, failed, or that the snapshot cannot tell about.

A cluster marked down (``shared/state/clusters.py``) gets no pass at all: no
request, every unit's request joins its one queued run, which waits for the
cluster's next probe. A pass whose request gets no answer (connection refused, a
timeout) marks the cluster down itself, so a frozen API server costs one timeout
per cluster, not one per unit and tick.

The guarantee that a unit never acts on state older than its last write holds: a
unit's state in Redis is read before the LISTs, and a run's writes end before its
status is written, so a LIST (a consistent read) taken afterwards holds them; a
run that begins after the read makes the refresh fail (the unit then gets a run).
A quiet unit is not acted on at all: no write, no lock, no history entry (nothing
happened), only its status's times, which staleness alerts read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from shared.state import keys
from shared.errors import FleetsyncError
from shared.logs import get_logger
from shared.protocol import Phase
from shared.state.quiet import QuietUnits
from shared.state.redisconn import RedisError
from shared.spec.model import Application, Cluster, Fleet
from shared.state.status import UnitStatus, now_iso
from workers.run import cluster_hold, stages, windows
from workers.run.cluster_hold import ClusterHold
from workers.context import Context
from workers.render.cache import memo_key
from workers.run.requests import revision_for

log = get_logger("fleetsync.sweep")


@dataclass(frozen=True)
class _Candidate:
    app: Application
    status: UnitStatus
    render_key: str = ""
    objects: list[dict] = field(default_factory=list)
    held: str = ""                  # a change window holds it: the status says so
    note: str = ""                  # its source's latest fetch was refused: the status says why


@dataclass
class Pass:
    """What a cluster pass found: the quiet units and what it cost."""

    quiet: set[str] = field(default_factory=set)
    hold: ClusterHold | None = None     # the cluster's own hold (its ConfigMap), as read
    checked: int = 0
    requests: int = 0
    reasons: dict[str, str] = field(default_factory=dict)     # app -> why it needs a run

    def summary(self) -> dict[str, Any]:
        return {"quiet": len(self.quiet), "checked": self.checked, "requests": self.requests}


def quiet_units(ctx: Context, cluster: Cluster, apps: list[Application],
                statuses: dict[str, UnitStatus], revisions: dict[str, str]) -> Pass:
    """The applications of ``cluster`` whose unit needs no run this pass (their status
    is refreshed); never raises: whatever fails here is left to the units' own runs."""
    started = time.monotonic()
    found = Pass()
    try:
        if ctx.clusters.down(cluster.name) is not None:
            log.info("no cluster pass: the cluster is down", cluster=cluster.name)
            return found
        found.hold = cluster_hold.read(ctx, cluster)          # one GET for every unit
        candidates = _candidates(ctx, cluster, apps, statuses, revisions, found.hold)
        candidates = _unheld(ctx, cluster, candidates)
        candidates = _rendered(ctx, cluster, candidates)
        found.checked = len(candidates)
        if candidates:
            _judge(ctx, cluster, candidates, found)
    except (FleetsyncError, RedisError) as exc:
        log.info("cluster pass gave up; every unit gets a run", cluster=cluster.name,
                 error=str(exc))
        if stages.unreachable(exc):
            ctx.clusters.mark_down(cluster.name, ctx.kube(cluster).server,
                                   stages.unreachable(exc))
        return Pass(hold=found.hold)
    except Exception:           # a bug here must not stop the cluster's reconcile
        log.exception("cluster pass failed; every unit gets a run", cluster=cluster.name)
        return Pass(hold=found.hold)
    log.info("cluster pass", cluster=cluster.name, units=len(apps),
             seconds=round(time.monotonic() - started, 3), **found.summary())
    return found


def _candidates(ctx: Context, cluster: Cluster, apps: list[Application],
                statuses: dict[str, UnitStatus], revisions: dict[str, str],
                on_cluster: ClusterHold | None = None) -> list[_Candidate]:
    """Units Ready at the revision and spec a run would sync them to now."""
    fleet = ctx.fleet()
    out = []
    refused: dict[str, str] = {}    # source -> why its latest fetch was refused, once a pass
    for app in apps:
        status = statuses.get(app.name)
        if (status is None or app.suspend or app.rollout is not None
                or status.phase != Phase.READY.value or not status.run_id):
            continue
        try:
            revision = revision_for(ctx, app.source, False, revisions)
        except FleetsyncError:
            continue
        held = _held(ctx, fleet, app, cluster, revision, status, on_cluster)
        if held is not None:     # quiet at the revision it has, if its status says so
            if not held.told_in(status):
                continue
            revision = status.revision
        elif status.held_by:     # the window opened: a run lifts the hold in its status
            continue
        spec_hash = stages.unit_spec_hash(fleet, app, cluster)
        if status.revision == revision and status.applied_key == f"{revision}:{spec_hash}":
            if app.source not in refused:
                refused[app.source] = stages.recorded_source(ctx, app.source)[1]
            note = (f"source {app.source} stays at {revision[:12]}: {refused[app.source]}"
                    if refused[app.source] else "")
            out.append(_Candidate(app, status, memo_key(keys.unit_id(app.name, cluster.name),
                                                        revision, spec_hash),
                                  held=held.message() if held else "", note=note))
    return out


def _held(ctx: Context, fleet: Fleet, app: Application, cluster: Cluster, head: str,
          status: UnitStatus, on_cluster: ClusterHold | None) -> windows.Hold | None:
    """A change window's hold on the unit, or the cluster's own (``workers/run/windows.py``):
    a held unit is quiet at the revision it has once a run told the hold in its status."""
    if not fleet.windows and on_cluster is None:
        return None
    return windows.hold(ctx, fleet, app, cluster, head, windows.applied_revision(status),
                        on_cluster=on_cluster)


def _unheld(ctx: Context, cluster: Cluster, candidates: list[_Candidate]) -> list[_Candidate]:
    """Those with no run queued, parked or running, not suspended, and whose render is
    remembered (``render_key`` becomes the render's key)."""
    pipe = ctx.redis.pipeline(transaction=False)
    for c in candidates:
        unit = keys.unit_id(c.app.name, cluster.name)
        pipe.mget([*keys.protocol(unit), c.render_key])
        pipe.hmget(keys.suspended(c.app.name), "*", cluster.name)
    replies = pipe.execute()
    out = []
    for i, c in enumerate(candidates):
        values, held = replies[2 * i], replies[2 * i + 1]
        *running, render_key = values
        if not any(running) and render_key and not any(held):
            out.append(replace(c, render_key=render_key))
    return out


def _rendered(ctx: Context, cluster: Cluster, candidates: list[_Candidate]) -> list[_Candidate]:
    """Those whose render entry is cached, sealed by the workers and bound to this unit
    at this revision; with its objects."""
    entries = ctx.cache.get_entries([c.render_key for c in candidates])
    out = []
    for c, entry in zip(candidates, entries):
        if entry is None:
            continue
        objects, meta = entry
        if stages.render_mismatch(meta, c.app, cluster, c.status.revision):
            continue
        out.append(replace(c, objects=objects))
    return out


def _judge(ctx: Context, cluster: Cluster, candidates: list[_Candidate], found: Pass) -> None:
    """Snapshot the cluster (per identity the units read as), judge each unit, and
    refresh the quiet ones' status."""
    from workers.apply import namespaces
    from workers.apply.discovery import PROCESS
    from workers.apply.engine import judge
    from workers.apply.pool import shared
    from workers.apply.refs import NAMESPACE_KIND
    from workers.apply.snapshot import take

    kube = ctx.kube(cluster)
    fleet = ctx.fleet()
    catalog = PROCESS.catalog(kube)
    by_identity: dict[str | None, list[_Candidate]] = {}
    for c in candidates:
        by_identity.setdefault(stages.identity_of(c.app, cluster), []).append(c)
    quiet: list[tuple[_Candidate, dict[str, int]]] = []
    for identity, group in by_identity.items():
        kinds = {(o.get("apiVersion", ""), o.get("kind", "")) for c in group for o in c.objects}
        if any(namespaces.wanted(c.app, c.objects) for c in group):   # created if missing
            kinds.add(NAMESPACE_KIND)
        resources = [catalog[k] for k in kinds if k in catalog]
        snapshot = take(kube.session(identity), resources, shared(),
                        [c.app.name for c in group])
        found.requests += snapshot.requests
        for c in group:
            verdict = judge(kube, app=c.app, objects=c.objects, revision=c.status.revision,
                            snapshot=snapshot, identity=identity,
                            rules=stages.health_rules(fleet, c.app))
            if verdict.why:
                found.reasons[c.app.name] = verdict.why
            else:
                quiet.append((c, verdict.counts))
    written = QuietUnits(ctx.redis).refresh(
        [(c.status, "; ".join(filter(None, (stages.message(counts), c.held, c.note))), counts)
         for c, counts in quiet], now_iso())
    found.quiet = {c.app.name for (c, _), ok in zip(quiet, written) if ok}
