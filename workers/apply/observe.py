"""Observe: everything a plan needs to know, read in as few requests as possible.

    objects --stamp, scope--> desired --discovery--> Resource per ref
            --GET each (thread pool)--> live      + inventory (GET, same pool)

One GET for the inventory, then one per object (desired, and previous-inventory
objects that are no longer desired): a run of N objects costs N+1 reads. A LIST
per kind would not find unlabelled objects (which the plan must see to refuse or
adopt them) without listing everything of that kind. The no-op pass of a whole
cluster (``workers/run/sweep.py``) observes from a labelled ``Snapshot`` instead, and
leaves to a run of its own every unit the snapshot cannot tell about.

A unit with no inventory yet (its first apply) is probed instead of read: one
server-side apply dry-run per object, which the server answers 201 when the
object does not exist (and 404 when its namespace does not), so most objects of
a first apply need no GET, and the dry-run is the object's validation too
(``probed``: ``validate`` does not dry-run that body again). An object that
exists, or whose dry-run is refused, is read with a GET as above, and its
validation is left to ``validate``.

Custom resources whose CRD is in the same render and not served yet are
``pending``: their Resource comes from the CRD spec and their live state is
absent without asking.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from workers.apply.pool import shared
from dataclasses import dataclass, field
from typing import Iterable

from shared.errors import ApplyError, FleetsyncError
from workers.apply import annotations as notes
from workers.apply import inventory as inv
from workers.apply.discovery import Discovery, Resource, TypeKey, from_crd
from workers.apply.kube import Kube, KubeError, NotFound
from workers.apply.refs import ObjectRef, is_crd, is_namespace, ref_of, stamp
from workers.apply.snapshot import Snapshot, Unobserved

DEFAULT_NAMESPACE = "default"


@dataclass(frozen=True)
class Observation:
    desired: dict[ObjectRef, dict]          # stamped, namespace set exactly when namespaced
    resources: dict[ObjectRef, Resource]    # for desired and previous-inventory refs
    live: dict[ObjectRef, dict | None]
    inventory: inv.Inventory
    pending: frozenset[ObjectRef]           # kinds defined by a CRD of this render, not served yet
    probed: dict[ObjectRef, dict] = field(default_factory=dict)   # bodies dry-run (and valid)


def check_shape(objects: Iterable[dict]) -> None:
    """Every object has apiVersion, kind and name, and no ref appears twice."""
    seen: set[ObjectRef] = set()
    for index, obj in enumerate(objects):
        ref = ref_of(obj)
        if not (ref.api_version and ref.kind and ref.name):
            raise ApplyError(f"object #{index} lacks apiVersion, kind or metadata.name",
                             obj=str(ref))
        if ref in seen:
            raise ApplyError(f"{ref} appears twice in the render", obj=str(ref))
        seen.add(ref)


def scoped(obj: dict, namespaced: bool) -> dict:
    """``obj`` with a namespace exactly when its kind is namespaced (as kubectl does)."""
    meta = obj.get("metadata") or {}
    if namespaced and not meta.get("namespace"):
        return {**obj, "metadata": {**meta, "namespace": DEFAULT_NAMESPACE}}
    if not namespaced and "namespace" in meta:
        return {**obj, "metadata": {k: v for k, v in meta.items() if k != "namespace"}}
    return obj


def crd_kinds(objects: Iterable[dict]) -> dict[TypeKey, Resource]:
    """Kinds the CRDs among ``objects`` define."""
    kinds: dict[TypeKey, Resource] = {}
    for obj in objects:
        if is_crd(ref_of(obj)):
            kinds.update(from_crd(obj))
    return kinds


def desired_objects(kube: Kube, app: str, objects: list[dict], discovery: Discovery
                    ) -> tuple[dict[ObjectRef, dict], dict[ObjectRef, Resource], set[ObjectRef]]:
    """Stamp, resolve and scope the render; which refs are pending on a CRD of it."""
    check_shape(objects)
    stamped = [stamp(obj, app) for obj in objects]
    found = discovery.resolve(kube, [ref_of(o) for o in stamped], pending=crd_kinds(stamped))
    served = discovery.catalog(kube)
    desired: dict[ObjectRef, dict] = {}
    resources: dict[ObjectRef, Resource] = {}
    pending: set[ObjectRef] = set()
    for obj in stamped:
        resource = found[ref_of(obj)]
        obj = scoped(obj, resource.namespaced)
        ref = ref_of(obj)
        desired[ref], resources[ref] = obj, resource
        if (resource.api_version, resource.kind) not in served:
            pending.add(ref)
    check_shape(desired.values())    # scoping can make two refs one
    return desired, resources, pending


def observe(kube: Kube, app: str, objects: list[dict], discovery: Discovery,
            snapshot: Snapshot | None = None) -> Observation:
    """Desired objects, their live state, the inventory and its objects' live state; from
    ``snapshot`` when given (no read of its own, ``Unobserved`` when it cannot tell)."""
    desired, resources, pending = desired_objects(kube, app, objects, discovery)
    if snapshot is not None:
        return _from_snapshot(app, desired, resources, pending, snapshot)
    pool = shared()
    inventory = inv.read(kube, app)
    served = [r for r in desired if r not in pending]
    probed: dict[ObjectRef, dict] = {}
    if inventory.resource_version is None:          # a first apply: probe, do not read
        live_desired, probed = _probe_all(pool, kube, resources, desired, served)
    else:
        live_desired = _read_all(pool, kube, resources, served)
    leftovers = [r for r in inventory.refs if r not in desired]
    found = discovery.lookup(kube, leftovers)
    live_left = _read_all(pool, kube, found, list(found))
    live = {**dict.fromkeys(pending), **live_desired, **live_left,
            **{r: None for r in leftovers if r not in found}}
    return Observation(desired, {**found, **resources}, live, inventory, frozenset(pending),
                       probed)


def _from_snapshot(app: str, desired: dict[ObjectRef, dict],
                   resources: dict[ObjectRef, Resource], pending: set[ObjectRef],
                   snapshot: Snapshot) -> Observation:
    """What a labelled snapshot tells of a unit whose every object is live and labelled,
    and which has nothing to prune; anything else is ``Unobserved``."""
    if pending:
        raise Unobserved("kinds of this render's CRDs are not served yet")
    inventory = snapshot.inventory(app)
    if any(ref not in desired for ref in inventory.refs):
        raise Unobserved("its inventory holds objects no longer rendered")
    live = {ref: _told(snapshot, ref, app, obj) for ref, obj in desired.items()}
    return Observation(desired, resources, live, inventory, frozenset())


def _told(snapshot: Snapshot, ref: ObjectRef, app: str, obj: dict) -> dict | None:
    """What the snapshot tells of one desired object; one that Git's annotations leave
    alone (``kustomize.toolkit.fluxcd.io/ssa: Ignore``...) needs nothing told."""
    try:
        return snapshot.live(ref, app)
    except Unobserved:
        if notes.read(obj).hold:
            return None
        raise


def _read_all(pool: ThreadPoolExecutor, kube: Kube, resources: dict[ObjectRef, Resource],
              refs: list[ObjectRef]) -> dict[ObjectRef, dict | None]:
    futures = {ref: pool.submit(kube.get_or_none, resources[ref].path(ref)) for ref in refs}
    out = {}
    for ref, future in futures.items():
        try:
            out[ref] = future.result()
        except FleetsyncError as exc:       # e.g. the application's identity may not read it
            exc.obj = exc.obj or str(ref)
            raise
    return out


def _probe_all(pool: ThreadPoolExecutor, kube: Kube, resources: dict[ObjectRef, Resource],
               desired: dict[ObjectRef, dict], refs: list[ObjectRef]
               ) -> tuple[dict[ObjectRef, dict | None], dict[ObjectRef, dict]]:
    """(live state, bodies whose dry-run passed) of ``refs``, probed: the objects of a
    Namespace this render brings are probed after it, and not at all when it is new."""
    brought = {ref.name for ref in refs if is_namespace(ref)}
    first = [ref for ref in refs if ref.namespace not in brought]
    live, probed = _probe(pool, kube, resources, desired, first)
    new = {ref.name for ref in first if is_namespace(ref) and live[ref] is None}
    inside = [ref for ref in refs if ref.namespace in brought]
    live.update(dict.fromkeys([ref for ref in inside if ref.namespace in new]))
    more, more_probed = _probe(pool, kube, resources, desired,
                               [ref for ref in inside if ref.namespace not in new])
    return {**live, **more}, {**probed, **more_probed}


def _probe(pool: ThreadPoolExecutor, kube: Kube, resources: dict[ObjectRef, Resource],
           desired: dict[ObjectRef, dict], refs: list[ObjectRef]
           ) -> tuple[dict[ObjectRef, dict | None], dict[ObjectRef, dict]]:
    """One dry-run each: absent when the server would create it or has no namespace (or
    kind) for it; read with a GET when it exists or the dry-run was refused (validation
    then says why)."""
    futures = {ref: pool.submit(kube.would_create, resources[ref].path(ref), desired[ref])
               for ref in refs}
    live: dict[ObjectRef, dict | None] = {}
    probed: dict[ObjectRef, dict] = {}
    unknown: list[ObjectRef] = []
    for ref, future in futures.items():
        try:
            created = future.result()
        except NotFound:
            live[ref] = None
            continue
        except KubeError:
            unknown.append(ref)
            continue
        except FleetsyncError as exc:
            exc.obj = exc.obj or str(ref)
            raise
        if created:
            live[ref], probed[ref] = None, desired[ref]
        else:
            unknown.append(ref)
    return {**live, **_read_all(pool, kube, resources, unknown)}, probed
