"""Prune safety for Namespaces: deleting one deletes everything in it, so look first.

A Namespace the plan would prune is kept when it still holds an object that is
not going away with this prune: one of another application, or one fleetsync
does not own (made by hand, by another tool). Objects that controllers made for
others (they carry ``ownerReferences``) follow their owners, and what Kubernetes
puts in every namespace (``kube-root-ca.crt``, the ``default`` ServiceAccount,
Events, Endpoints) does not count; an object of the application itself counts
when its annotations keep it (``Prune=false``, ``Delete=false``, Flux's ``prune:
disabled``: ``workers.apply.annotations``). The Namespace is then left alone
(and out of the inventory), and the result names what it still holds.

It costs one LIST per namespaced kind the server serves, in parallel, only when
a Namespace is about to be pruned, which is rare; it lists as fleetsync itself,
not as the application's identity, to see everything.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future

from shared.errors import FleetsyncError
from workers.apply import annotations as notes
from workers.apply.discovery import Discovery, Resource
from workers.apply.kube import Kube
from workers.apply.observe import Observation
from workers.apply.plan import OCCUPIED, SKIPPED, Change, ChangeSet
from workers.apply.pool import shared
from workers.apply.refs import APP_LABEL, ObjectRef, is_namespace

EVERYWHERE = {("ConfigMap", "kube-root-ca.crt"), ("ServiceAccount", "default")}
NOISE = {"Event", "Endpoints", "EndpointSlice", "Lease"}
SHOWN = 5


def keep_occupied(kube: Kube, changeset: ChangeSet, seen: Observation, app: str,
                  discovery: Discovery) -> ChangeSet:
    """``changeset`` with every Namespace prune that would take others' objects along
    turned into a skip that names them."""
    doomed = [c.ref for c in changeset.to_prune() if is_namespace(c.ref)]
    if not doomed:
        return changeset
    going = {c.ref for c in changeset.to_prune()}
    kube = kube.own()
    kinds = _namespaced(discovery.catalog(kube))
    held = {ns: holders(kube, ns.name, kinds, app, going) for ns in doomed}
    entries = tuple(
        Change(c.ref, SKIPPED, f"{OCCUPIED}: {_names(held[c.ref])}")
        if c.ref in held and held[c.ref] and c in changeset.to_prune() else c
        for c in changeset.entries)
    return dataclasses.replace(changeset, entries=entries)


def holders(kube: Kube, namespace: str, kinds: list[Resource], app: str,
            going: set[ObjectRef]) -> list[str]:
    """What in ``namespace`` would be lost with it: ``Kind/name (whose)``, sorted."""
    pool = shared()
    futures: dict[Resource, Future] = {
        r: pool.submit(kube.list_items, r.collection(namespace)) for r in kinds}
    found = []
    for resource, future in futures.items():
        try:
            items = future.result()
        except FleetsyncError:       # not listable (create-only kinds), or forbidden
            continue
        for obj in items:
            meta = obj.get("metadata") or {}
            ref = ObjectRef(resource.api_version, resource.kind, namespace, meta.get("name", ""))
            if ref in going or meta.get("ownerReferences") \
                    or (resource.kind, ref.name) in EVERYWHERE:
                continue
            owner = (meta.get("labels") or {}).get(APP_LABEL)
            stays = _stays(obj, f"{resource.kind}/{namespace}/{ref.name}")
            if owner == app and not stays:
                continue             # ours, and going with the namespace by our own choice
            whose = (stays if owner == app else f"application {owner}" if owner
                     else "not fleetsync's")
            found.append(f"{resource.kind}/{ref.name} ({whose})")
    return sorted(found)


def _stays(obj: dict, where: str) -> str:
    """Why an object's annotations keep it ("" when they do not; unreadable ones keep it)."""
    try:
        how = notes.read(obj, where)
    except notes.AnnotationError as exc:
        return exc.message
    return how.keep or how.delete


def _namespaced(catalog: dict) -> list[Resource]:
    """One resource per namespaced (group, kind), the noise left out."""
    seen: dict[tuple[str, str], Resource] = {}
    for resource in catalog.values():
        group = resource.api_version.rpartition("/")[0]
        if resource.namespaced and resource.kind not in NOISE:
            seen.setdefault((group, resource.kind), resource)
    return list(seen.values())


def _names(found: list[str]) -> str:
    more = len(found) - SHOWN
    return ", ".join(found[:SHOWN]) + (f" and {more} more" if more > 0 else "")
