"""A cluster opts out locally: the ConfigMap ``fleetsync-hold`` in ``fleetsync-system``.

Someone on site, with access to the cluster but not to Git or Redis, stops changes
to it by creating the ConfigMap (optional data keys ``until``: RFC 3339, ``by``,
``reason``). While it exists (and ``until``, if given, has not passed) every unit of
that cluster, and only that cluster, is held as a closed change window holds it
(``workers/run/windows.py``): no new revision is applied, drift is reported but
not corrected, and no manual sync passes. Deleting it lifts the hold at the next
pass.

It is read with one GET per cluster pass (``reconcile_cluster``, push mode) and
by the apply stage (the pull workers, which alone reach their cluster), at most once
per two seconds per worker process and cluster: a 404 is
"not held"; a 403 is "not held" and a warning, once per process and cluster; a
cluster that does not answer is marked down, as a run that asked it would mark it. Its
content is hostile: only the three keys are read, each cut and cleaned; an
``until`` that does not parse holds with no end (and says so).

Each hold seen and each hold lifted is one ``event: audit`` log line, once
fleet-wide (the last hold seen per cluster is swapped in Redis, ``SET ... GET``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from shared import audit, clock
from shared.audit import clean
from shared.errors import FleetsyncError
from shared.logs import get_logger
from shared.spec.model import Cluster
from shared.state import keys
from shared.state.overrides import MAX_BY, MAX_REASON
from shared.state.redisconn import RedisError
from workers.context import Context

log = get_logger("fleetsync.cluster_hold")

NAMESPACE, NAME = "fleetsync-system", "fleetsync-hold"
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{NAME}"
HELD_BY = f"configmap/{NAME}"          # a unit's held_by: no window name has a slash
_WARNED: set[str] = set()              # clusters whose 403 was logged by this process
FRESH = 2.0                            # seconds a hold read stands for in this process
_SEEN: dict[str, tuple[float, "ClusterHold | None"]] = {}     # cluster: (when read, hold)


@dataclass(frozen=True)
class ClusterHold:
    """The hold a cluster's ConfigMap puts on it: who, why, until when ("" none)."""

    by: str = ""
    reason: str = ""
    until: str = ""                    # ISO 8601 UTC, or "" (until lifted)
    problem: str = ""                  # what was wrong with its content

    def message(self) -> str:
        text = f"held on the cluster by {self.by or 'someone'}"
        if self.until:
            at = datetime.fromisoformat(self.until.replace("Z", "+00:00"))
            text += f" until {at:%a %H:%M} UTC"
        else:
            text += " until lifted"
        text += f" ({self.reason})" if self.reason else ""
        text += f" ({self.problem})" if self.problem else ""
        return f"{text}: delete ConfigMap {NAMESPACE}/{NAME} there to lift it"


def parse(obj: Any, now: datetime) -> ClusterHold | None:
    """The hold a ConfigMap object puts on its cluster at ``now``, or None (expired)."""
    data = obj.get("data") if isinstance(obj, dict) else None
    data = data if isinstance(data, dict) else {}
    by, reason = clean(data.get("by"), MAX_BY), clean(data.get("reason"), MAX_REASON)
    raw_until = data.get("until")
    if raw_until is None:
        return ClusterHold(by, reason)
    until = _instant(raw_until)
    if until is None:
        return ClusterHold(by, reason, problem=f"until {clean(raw_until, 40)!r} is not "
                                               "RFC 3339: held until lifted")
    if until <= now:
        return None
    return ClusterHold(by, reason, until.isoformat().replace("+00:00", "Z"))


def _instant(text: object) -> datetime | None:
    if not isinstance(text, str) or len(text) > 40:
        return None
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return at.astimezone(timezone.utc) if at.tzinfo is not None else None


def read(ctx: Context, cluster: Cluster, unless_down: bool = False) -> ClusterHold | None:
    """The cluster's hold now: one GET, as fleetsync itself (never an impersonated
    identity), at most once per ``FRESH`` seconds in this process (a cold sync of a
    thousand units on one cluster reads it a few times, not a thousand times). Errors
    are "not held": a 403 warned once, the rest left to the runs (and read again).
    ``unless_down``: a cluster marked down is not asked (not held), unless the hold was
    read just now."""
    known, hold = _remembered(cluster.name)
    if known:
        return hold
    if unless_down and ctx.clusters.down(cluster.name):
        return None
    hold, answered = _read(ctx, cluster)
    if answered:
        _SEEN[cluster.name] = (time.monotonic(), hold)
    return hold


def _remembered(cluster: str) -> tuple[bool, ClusterHold | None]:
    """``(True, hold)`` when this process read the cluster's hold less than ``FRESH`` ago."""
    seen = _SEEN.get(cluster)
    if seen is not None and time.monotonic() - seen[0] < FRESH:
        return True, seen[1]
    return False, None


def _read(ctx: Context, cluster: Cluster) -> tuple[ClusterHold | None, bool]:
    """The hold, and whether the cluster answered (a 404 or 403 is an answer)."""
    from workers.apply.kube import NotFound, Refused

    try:
        obj = ctx.kube(cluster).own().get(PATH)
    except NotFound:
        obj = None
    except Refused as exc:
        if cluster.name not in _WARNED:
            _WARNED.add(cluster.name)
            log.warning("cannot read the cluster's hold ConfigMap: taken as not held",
                        cluster=cluster.name, configmap=f"{NAMESPACE}/{NAME}", error=str(exc))
        obj = None
    except FleetsyncError as exc:
        log.info("the cluster's hold ConfigMap not read", cluster=cluster.name, error=str(exc))
        unreachable = str(getattr(exc, "unreachable", "") or "")
        if unreachable:         # no answer at all: the cluster is down, as a run would find
            try:
                ctx.clusters.mark_down(cluster.name, ctx.kube(cluster).server, unreachable)
            except RedisError:
                pass
        return None, False
    hold = parse(obj, clock.now()) if obj is not None else None
    _audit_change(ctx, cluster.name, hold)
    return hold, True


def _audit_change(ctx: Context, cluster: str, hold: ClusterHold | None) -> None:
    """One audit line when the hold seen differs from the last one seen, fleet-wide."""
    now = json.dumps(asdict(hold), sort_keys=True) if hold else ""
    try:
        before = ctx.redis.set(keys.cluster_hold(cluster), now, get=True)
    except RedisError as exc:
        log.info("cluster hold not compared with the last seen", cluster=cluster, error=str(exc))
        return
    if (before or "") == now:
        return
    if hold is not None:
        audit.record(who=hold.by or "unknown", what="cluster hold seen",
                     units=[f"{cluster}/*"], why=hold.reason, cluster=cluster,
                     until=hold.until or "lifted by hand")
    else:
        audit.record(who="unknown", what="cluster hold lifted", units=[f"{cluster}/*"],
                     why="the hold ConfigMap is gone or expired", cluster=cluster)
