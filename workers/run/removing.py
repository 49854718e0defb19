"""An application left the fleet spec (or stopped targeting a cluster): its removal stage.

Under the unit's lock (so it never overlaps a run), what it applied there is orphaned or
pruned as its ``onRemoval`` said (``workers/apply/removal.py``), then the unit is forgotten.
A unit that came back into the spec meanwhile is left alone.
"""

from __future__ import annotations

import uuid

from shared.state import keys
from shared.errors import TransientError
from shared.logs import bind, get_logger
from workers.run import stages
from workers.context import Context
from workers.run.steps import Next

log = get_logger("fleetsync.removing")


REMOVAL_RETRY = 5.0


def remove(ctx: Context, app_name: str, cluster_name: str) -> Next:
    """Orphan or prune (its ``onRemoval``) what an application that left the spec applied on
    a cluster, under the unit's lock, then forget the unit. A unit back in the spec is
    left alone."""
    bind(app=app_name, cluster=cluster_name, stage="remove")
    unit = keys.unit_id(app_name, cluster_name)
    fleet = ctx.fleet()
    cluster = fleet.clusters.get(cluster_name)
    app = fleet.applications.get(app_name)
    if app is not None and cluster is not None and app.clusters.matches(cluster):
        return Next({"unit": unit, "summary": "back in the fleet spec: nothing removed"})
    if cluster is None:              # no credential for it any more: only forget
        ctx.status.forget(app_name, cluster_name)
        return Next({"unit": unit, "summary": "its cluster left the spec too: forgotten"})
    owner = uuid.uuid4().hex
    if not ctx.runs.take_lock(unit, owner):
        return Next({"unit": unit, "summary": "the unit is busy: removing it a little later"},
                    retry_in=REMOVAL_RETRY)
    try:
        mode = ctx.status.get_status(app_name, cluster_name).on_removal or "orphan"
        done = stages.remove_objects(ctx, app_name, cluster, mode)
    except TransientError as exc:
        return Next({"unit": unit, "summary": f"retrying: {exc}"}, retry_in=REMOVAL_RETRY)
    finally:
        ctx.runs.release_lock(unit, owner)
    ctx.status.forget(app_name, cluster_name)
    log.info("application removed from the cluster", mode=mode, summary=done.summary())
    return Next({"unit": unit, "summary": f"removed (onRemoval: {mode}): {done.summary()}"})
