"""A cluster's labelled objects, read in bulk: what a no-op pass compares against.

One LIST per kind (label-selected by the ownership label, paginated) and one LIST of
the inventories in ``fleetsync-system`` read every object fleetsync applied on a
cluster, for every unit at once: a pass over N units costs a handful of requests
instead of N+1 GETs each (``observe``). A LIST without ``resourceVersion`` is a
consistent read (served as fresh as a quorum read of etcd), so a snapshot taken
after a unit's last write has ended holds that write: ``workers/run/sweep.py`` reads the
units' state in Redis first, then takes the snapshot.

What a labelled LIST cannot show (an object missing, or whose label someone
removed, an object of a kind not listed) is ``Unobserved``: the unit is then
observed object by object, by a run of its own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable

from shared.errors import FleetsyncError
from workers.apply import inventory as inv
from workers.apply.discovery import Resource, TypeKey
from workers.apply.kube import Kube
from workers.apply.refs import APP_LABEL, ObjectRef

PAGE = 1000                 # objects per LIST page
SELECTOR_MAX = 2048         # characters of a label selector naming the applications


class Unobserved(Exception):
    """The snapshot cannot tell this unit's live state: read it object by object."""


@dataclass
class Snapshot:
    """Labelled live objects by ref, the kinds listed, inventories by application."""

    objects: dict[ObjectRef, dict] = field(default_factory=dict)
    kinds: set[TypeKey] = field(default_factory=set)
    failed: dict[TypeKey, str] = field(default_factory=dict)     # kind -> why its LIST failed
    inventories: dict[str, inv.Inventory] = field(default_factory=dict)
    requests: int = 0

    def live(self, ref: ObjectRef, app: str) -> dict:
        """The live object of ``ref``, labelled for ``app``; ``Unobserved`` otherwise."""
        key = (ref.api_version, ref.kind)
        if key not in self.kinds:
            raise Unobserved(f"{ref.kind} not listed: {self.failed.get(key, 'not asked for')}")
        obj = self.objects.get(ref)
        if obj is None:
            raise Unobserved(f"{ref} has no ownership label live (missing, or unlabelled)")
        if ((obj.get("metadata") or {}).get("labels") or {}).get(APP_LABEL) != app:
            raise Unobserved(f"{ref} is labelled for another application")
        return obj

    def inventory(self, app: str) -> inv.Inventory:
        return self.inventories.get(app) or inv.Inventory()


def take(kube: Kube, resources: Iterable[Resource], pool: ThreadPoolExecutor,
         apps: Iterable[str] = ()) -> Snapshot:
    """One (paginated) labelled LIST per kind, and the inventories, in parallel; of
    ``apps`` only when they are few (else of every application). A kind whose LIST
    fails is left out (its units are observed one by one); the inventories must be
    read, or nothing can be told."""
    wanted = {(r.api_version, r.kind): r for r in resources}
    snapshot = Snapshot()
    stored = pool.submit(_list, kube.own(), inv.CONFIGMAPS,
                         selector(inv.INVENTORY_LABEL, apps))
    listed = {key: pool.submit(_list, kube, r.collection(), selector(APP_LABEL, apps))
              for key, r in wanted.items()}
    for key, future in listed.items():
        try:
            items, pages = future.result()
        except FleetsyncError as exc:          # forbidden, or the kind went away
            snapshot.failed[key] = str(exc)
            continue
        snapshot.requests += pages
        snapshot.kinds.add(key)
        resource = wanted[key]
        for item in items:
            item.setdefault("apiVersion", resource.api_version)
            item.setdefault("kind", resource.kind)
            meta = item.get("metadata") or {}
            ref = ObjectRef(resource.api_version, resource.kind,
                            meta.get("namespace", "") if resource.namespaced else "",
                            meta.get("name", ""))
            snapshot.objects[ref] = item
    configmaps, pages = stored.result()
    snapshot.requests += pages
    for configmap in configmaps:
        app = ((configmap.get("metadata") or {}).get("labels") or {}).get(inv.INVENTORY_LABEL)
        if app and (configmap.get("metadata") or {}).get("name") == inv.name_for(app):
            snapshot.inventories[app] = inv.from_configmap(configmap)
    return snapshot


def selector(label: str, apps: Iterable[str]) -> str:
    """``label in (a,b,c)`` for a few applications: a cluster that holds many others'
    objects (a fleet of small clusters, or several fleets on one API server) is not
    read whole for three units; else ``label`` (it exists)."""
    names = sorted(set(apps))
    text = f"{label} in ({','.join(names)})"
    return text if names and len(text) <= SELECTOR_MAX else label


def _list(kube: Kube, path: str, selector: str) -> tuple[list[dict], int]:
    """Every item of a label-selected LIST, following ``continue``; and the pages read."""
    items: list[dict] = []
    token, pages = "", 0
    while True:
        query = [("labelSelector", selector), ("limit", str(PAGE))]
        if token:
            query.append(("continue", token))
        body = kube.request("GET", path, query=query)
        pages += 1
        items.extend(body.get("items") or [])
        token = (body.get("metadata") or {}).get("continue") or ""
        if not token:
            return items, pages
