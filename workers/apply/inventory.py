"""The inventory: what one sync unit applied last time, kept in the target cluster.

Prune needs to know what fleetsync applied before; that must survive Redis
being wiped (DESIGN "Durable truth"), so it lives next to the objects: one
ConfigMap ``fleetsync-<app>`` in ``fleetsync-system`` per sync unit, with

    revision    the commit last applied
    token       the fencing token of the lock holder that wrote it (an integer)
    objects     JSON list of ObjectRef ids
    adopted     JSON list of the ids it took over rather than created (not pruned
                unless the application says ``prune: adopted``)
    applied_at  when (UTC, ISO 8601)

``write`` is a compare-and-swap: it refuses a token lower than the stored one,
and replaces with the ``resourceVersion`` it read (or creates when there was
none), so a worker whose lock expired cannot overwrite a newer inventory; both
cases raise ``StaleInventory``. A write that would change nothing is skipped, so
a no-op reconcile costs no write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from shared.errors import ApplyError, StaleInventory
from workers.apply.kube import Conflict, Kube, NotFound
from workers.apply.refs import ObjectRef

NAMESPACE = "fleetsync-system"
INVENTORY_LABEL = "fleetsync.io/inventory"
CONFIGMAPS = f"/api/v1/namespaces/{NAMESPACE}/configmaps"


@dataclass(frozen=True)
class Inventory:
    refs: tuple[ObjectRef, ...] = ()
    revision: str = ""
    token: int = 0
    resource_version: str | None = None     # None: no ConfigMap yet
    adopted: tuple[ObjectRef, ...] = ()

    def same_as(self, refs: Iterable[ObjectRef], revision: str,
                adopted: Iterable[ObjectRef] | None = None) -> bool:
        return (set(self.refs) == set(refs) and self.revision == revision
                and (adopted is None or set(self.adopted) == set(adopted)))


def name_for(app: str) -> str:
    return f"fleetsync-{app}"


def to_configmap(app: str, refs: Iterable[ObjectRef], revision: str, token: int,
                 resource_version: str | None, now: datetime,
                 adopted: Iterable[ObjectRef] = ()) -> dict:
    """The ConfigMap body (pure)."""
    meta: dict = {"name": name_for(app), "namespace": NAMESPACE,
                  "labels": {INVENTORY_LABEL: app}}
    if resource_version:
        meta["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {
        "revision": revision, "token": str(token),
        "objects": json.dumps(sorted(r.id for r in refs)),
        "adopted": json.dumps(sorted(r.id for r in adopted)),
        "applied_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")}}


def from_configmap(configmap: dict) -> Inventory:
    """The inventory stored in a ConfigMap (pure); damaged fields read as empty."""
    data = configmap.get("data") or {}
    try:
        token = int(data.get("token") or 0)
    except ValueError:
        token = 0
    return Inventory(_refs(data.get("objects")), data.get("revision", ""), token,
                     (configmap.get("metadata") or {}).get("resourceVersion"),
                     _refs(data.get("adopted")))


def _refs(text: str | None) -> tuple[ObjectRef, ...]:
    try:
        ids = json.loads(text or "[]")
    except ValueError:
        ids = []
    return tuple(ObjectRef.parse(i) for i in ids if isinstance(i, str) and i.count("/") >= 3)


def read(kube: Kube, app: str) -> Inventory:
    """The stored inventory, or an empty one (no resourceVersion) when there is none."""
    configmap = kube.own().get_or_none(f"{CONFIGMAPS}/{name_for(app)}")
    if configmap is None:
        return Inventory()
    labels = (configmap.get("metadata") or {}).get("labels") or {}
    if labels.get(INVENTORY_LABEL) != app:     # not written by fleetsync for this application
        raise ApplyError(f"{NAMESPACE}/{name_for(app)} is not the inventory of {app} (label "
                         f"{INVENTORY_LABEL}={labels.get(INVENTORY_LABEL)!r}): refusing to trust "
                         "it; delete it if nothing of fleetsync made it")
    return from_configmap(configmap)


def check_token(app: str, stored: Inventory, token: int) -> None:
    """``StaleInventory`` when a lock holder newer than us (higher token) wrote it."""
    if stored.token > token:
        error = StaleInventory(f"inventory {NAMESPACE}/{name_for(app)} was written with "
                               f"fencing token {stored.token}, newer than ours ({token})")
        error.stored_token = stored.token
        raise error


def write(kube: Kube, app: str, refs: Iterable[ObjectRef], *, token: int, revision: str,
          previous: Inventory, adopted: Iterable[ObjectRef] | None = None) -> Inventory:
    """Store ``refs`` at ``revision`` (``adopted``: those of them taken over; None keeps
    what was recorded) unless nothing changed; ``StaleInventory`` when a newer writer
    got there first."""
    refs, kube = tuple(sorted(set(refs))), kube.own()
    took = set(previous.adopted if adopted is None else adopted) & set(refs)
    if previous.same_as(refs, revision, took):
        return previous
    check_token(app, previous, token)
    body = to_configmap(app, refs, revision, token, previous.resource_version,
                        datetime.now(timezone.utc), took)
    try:
        if previous.resource_version is None:
            stored = _create(kube, body)
        else:
            stored = kube.replace(f"{CONFIGMAPS}/{name_for(app)}", body)
    except (Conflict, NotFound) as exc:
        raise StaleInventory(f"inventory {NAMESPACE}/{name_for(app)} changed since it was read "
                             f"(resourceVersion {previous.resource_version}): {exc.detail}"
                             ) from exc
    return from_configmap(stored)


def _create(kube: Kube, body: dict) -> dict:
    """Create the ConfigMap; the namespace too, the first time (404 says it is missing)."""
    try:
        return kube.create(CONFIGMAPS, body)
    except NotFound:
        _ensure_namespace(kube)
        return kube.create(CONFIGMAPS, body)


def _ensure_namespace(kube: Kube) -> None:
    try:
        kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": NAMESPACE}})
    except Conflict:
        pass                        # created meanwhile by another sync unit
