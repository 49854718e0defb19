"""Helm hooks of a chart render: run before and after the main set, never part of it.

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
  after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

from shared.errors import ApplyError, FleetsyncError
from workers.apply import health
from workers.apply.discovery import Discovery, Resource
from workers.apply.kube import Kube, NotFound
from workers.apply.refs import ObjectRef, ref_of, stamp

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


def split(objects: list[dict]) -> tuple[list[Hook], list[dict]]:
    """(hooks, the main set) of a render."""
    hooks, rest = [], []
    for obj in objects:
        notes = _annotations(obj)
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
    """The hooks of ``event`` (``pre-upgrade``...), in the order Helm runs them."""
    chosen = [h for h in hooks if event in h.events]
    return sorted(chosen, key=lambda h: (h.weight, h.ref.kind, h.ref.namespace, h.ref.name))


def run(kube: Kube, hooks: list[Hook], app: str, event: str, discovery: Discovery,
        timeout: float, poll: float = 0.5) -> list[str]:
    """Run ``hooks`` one by one; ``HookFailed`` at the first that fails. What ran."""
    if not hooks:
        return []
    resources = discovery.resolve(kube, [h.ref for h in hooks])
    done = []
    for hook in hooks:
        resource = resources[hook.ref]
        path = resource.path(hook.ref)
        if "before-hook-creation" in hook.policies:
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
                     resources: Mapping[ObjectRef, Resource], timeout: float) -> None:
    """Wait (blocking) until the main set is healthy, for post hooks; ``HookFailed``."""
    try:
        health.wait(kube, current, resources, timeout=timeout)
    except FleetsyncError as exc:
        raise HookFailed(f"post hooks not run: {exc.message}") from exc
