"""Hooks of a render (Helm's, and Argo CD's): run around the main set, never part of it.

A rendered object whose ``helm.sh/hook`` annotation names ``pre-install``,
``pre-upgrade``, ``post-install`` or ``post-upgrade`` is a hook (the render stage
keeps only those, and only from charts). Hooks are not desired state: they are
not planned, not in the inventory, never pruned or drift-corrected. They run
when the unit's revision changes (``install`` when the unit has applied nothing
yet, else ``upgrade``), as Helm runs them:

- pre hooks before anything of the main set is written, in ``helm.sh/hook-weight``
  order (then kind and name); each is applied and waited for (a Job must
  complete), and one that fails stops the sync with nothing else written;
- post hooks once the main set is healthy (the apply waits for it, up to the
  application's ``timeout``), the same way;
- ``helm.sh/hook-delete-policy``: ``before-hook-creation`` (the default) deletes
  the previous object first, ``hook-succeeded`` and ``hook-failed`` delete it
  after; an object of the hook's name that does not carry the application's
  label is never replaced or deleted (the hook fails, naming it).

An object with Argo CD's ``argocd.argoproj.io/hook`` is a hook too (that
annotation wins over Helm's, as in Argo CD): its ``events`` are its phases
(``PreSync``, ``Sync``, ``PostSync``, ``SyncFail``), its ``weight`` its
``argocd.argoproj.io/sync-wave``, its delete policies Argo CD's in Helm's
spelling (the semantics agree), read by ``shared.argocd``; ``Skip`` alone drops
the object. One with only ``generateName`` is ``named`` per revision and phase
(``migrate-3f2a1bc-presync``), so a retry finds the same object instead of
making another. When each phase runs is ``workers.apply.phases``.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, replace
from typing import Callable, Mapping, TypeVar

from shared import argocd
from shared.errors import ApplyError, FleetsyncError
from workers.apply import health
from workers.apply.discovery import Discovery, Resource
from workers.apply.kube import Kube, NotFound
from workers.apply.refs import (APP_LABEL, ObjectRef, copied, kind_rank, owner_of, ref_of,
                                stamp, tier)

HOOK = "helm.sh/hook"
WEIGHT = "helm.sh/hook-weight"
DELETE_POLICY = "helm.sh/hook-delete-policy"
RUN = ("pre-install", "pre-upgrade", "post-install", "post-upgrade")
GONE_TIMEOUT = 60.0


class HookFailed(ApplyError):
    """A Helm hook did not succeed: the sync stops where the hook stood."""

    reason = "HookFailed"


@dataclass(frozen=True)
class Hook:
    obj: dict
    events: frozenset[str]
    weight: int
    policies: frozenset[str]

    @property
    def ref(self) -> ObjectRef:
        return ref_of(self.obj)


def _annotations(obj: Mapping) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


T = TypeVar("T")


def _argo(obj: dict, read: Callable[[Mapping], T]) -> T:
    """One of Argo CD's annotations of ``obj``, read; ``ApplyError`` naming the object."""
    try:
        return read(_annotations(obj))
    except argocd.Invalid as exc:
        meta = obj.get("metadata") or {}
        ref = replace(ref_of(obj), name=str(meta.get("name") or meta.get("generateName") or ""))
        raise ApplyError(f"{ref}: {exc}", obj=str(ref)) from exc


def split(objects: list[dict]) -> tuple[list[Hook], list[dict]]:
    """(hooks, the main set) of a render; objects Argo CD would skip are in neither."""
    hooks, rest = [], []
    for obj in objects:
        notes = _annotations(obj)
        if argocd.HOOK in notes:
            types = _argo(obj, argocd.hook_types) or frozenset()
            if not argocd.skipped(types):
                hooks.append(Hook(obj, types - {argocd.SKIP}, _argo(obj, argocd.sync_wave),
                                  _argo(obj, argocd.delete_policies)))
            continue
        events = frozenset(e.strip() for e in str(notes.get(HOOK, "")).split(",") if e.strip())
        if not events & set(RUN):
            rest.append(obj)
            continue
        try:
            weight = int(str(notes.get(WEIGHT, "0")).strip() or 0)
        except ValueError:
            weight = 0
        policies = frozenset(p.strip() for p in str(notes.get(DELETE_POLICY, "")).split(",")
                             if p.strip()) or frozenset({"before-hook-creation"})
        hooks.append(Hook(obj, events, weight, policies))
    return hooks, rest


def due(hooks: list[Hook], event: str) -> list[Hook]:
    """The hooks of ``event`` (``pre-upgrade``, ``PreSync``...) in the order they run:
    Helm's by weight, kind and name; Argo CD's by wave, kind order and name."""
    chosen = [h for h in hooks if event in h.events]
    if event not in argocd.PHASES:          # Helm's, as they always were
        return sorted(chosen, key=lambda h: (h.weight, h.ref.kind, h.ref.namespace, h.ref.name))
    return sorted(chosen, key=lambda h: order_key(h.weight, h.ref))


def order_key(wave: int, ref: ObjectRef) -> tuple[int, int, int, str, str]:
    """Within one phase: wave, fleetsync's tier (Namespaces, CRDs, cluster-scoped,
    namespaced), Argo CD's kind order, name."""
    return wave, tier(ref), kind_rank(ref.kind), ref.name, ref.id


def short(revision: str) -> str:
    """Seven characters that name the revision in a generated hook name: a commit's own
    (lower-case hex), else a digest of whatever the revision is."""
    if re.fullmatch(r"[0-9a-f]{7,64}", revision):
        return revision[:7]
    return hashlib.sha256(revision.encode()).hexdigest()[:7]


def named(hook: Hook, revision: str, event: str) -> Hook:
    """The hook with a name: a ``generateName`` hook gets ``<generateName><short
    revision>-<phase>``, the same at every try of this revision and phase."""
    meta = hook.obj.get("metadata") or {}
    if meta.get("name"):
        return hook
    obj = copied(hook.obj)
    obj["metadata"]["name"] = f"{meta.get('generateName', '')}{short(revision)}-{event.lower()}"
    return replace(hook, obj=obj)


def run(kube: Kube, hooks: list[Hook], app: str, event: str, discovery: Discovery,
        timeout: float, poll: float = 0.5) -> list[str]:
    """Run ``hooks`` one by one; ``HookFailed`` at the first that fails. What ran. An
    object of a hook's name that is not the application's own is never replaced."""
    if not hooks:
        return []
    resources = discovery.resolve(kube, [h.ref for h in hooks])
    done = []
    for hook in hooks:
        resource = resources[hook.ref]
        path = resource.path(hook.ref)
        live = kube.get_or_none(path)
        if live is not None and owner_of(live) != app:
            raise HookFailed(f"{event} hook {hook.ref}: an object of that name exists and is "
                             f"not labelled {APP_LABEL}={app}: not replaced", obj=str(hook.ref))
        if live is not None and "before-hook-creation" in hook.policies:
            _delete(kube, path, wait=True)
        obj = stamp(hook.obj, app)
        try:
            applied = kube.apply(path, obj)
            health.wait(kube, {hook.ref: applied}, {hook.ref: resource}, timeout=timeout,
                        poll=poll)
        except FleetsyncError as exc:
            if "hook-failed" in hook.policies:
                _delete(kube, path, wait=False)
            raise HookFailed(f"{event} hook {hook.ref} failed: {exc.message}",
                             obj=str(hook.ref)) from exc
        if "hook-succeeded" in hook.policies:
            _delete(kube, path, wait=False)
        done.append(f"{event} {hook.ref}")
    return done


def _delete(kube: Kube, path: str, *, wait: bool) -> None:
    try:
        kube.delete(path)
    except NotFound:
        return
    deadline = time.monotonic() + GONE_TIMEOUT
    while wait and kube.get_or_none(path) is not None:
        if time.monotonic() > deadline:
            raise HookFailed(f"{path}: the previous hook object is still being deleted after "
                             f"{GONE_TIMEOUT:g}s")
        time.sleep(0.2)


def main_set_healthy(kube: Kube, current: Mapping[ObjectRef, Mapping],
                     resources: Mapping[ObjectRef, Resource], timeout: float,
                     what: str = "post hooks") -> None:
    """Wait (blocking) until the main set is healthy, for post hooks; ``HookFailed``."""
    try:
        health.wait(kube, current, resources, timeout=timeout)
    except FleetsyncError as exc:
        raise HookFailed(f"{what} not run: {exc.message}") from exc
