"""Argo CD's sync waves: the main set applied wave by wave, in Argo CD's order.

``order`` is pure: each desired object's wave (``argocd.argoproj.io/sync-wave``,
0 without it), and the waves in the order they are applied. It is ``None`` when
no object carries the annotation and there is no ``Sync`` hook: the engine then
applies in one go, exactly as it always has (no health wait, no extra read),
which is what keeps a plain unit as fast as before.

Argo CD sorts a sync's tasks by phase, wave, kind order, then name
(gitops-engine ``sync/sync_tasks.go``) and moves a Namespace or a CRD ahead of
the first object that lives in it or is made of it, into that object's wave.
Here the wave is the outer loop; within a wave ``execute.apply_all`` applies
fleetsync's tiers (Namespaces, CRDs, other cluster-scoped, namespaced) in
Argo CD's kind order (``refs.kind_rank``), and ``order`` gives a Namespace or a
CRD the earliest wave of what depends on it, so the two rules agree.

``apply`` is the executor: for each wave, the writes of that wave, then
``between`` (the ``Sync`` hooks of the wave, and the wait for its health before a
later wave is written). What stops it is kept in ``Outcome.halted``, so the
engine records what was applied before it raises, as for a failed write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from shared import argocd
from shared.errors import ApplyError, FleetsyncError, HealthError, LockLost
from workers.apply.execute import Outcome
from workers.apply.refs import ObjectRef, is_crd, is_namespace


class WaveNotHealthy(HealthError):
    """A sync wave was not healthy in time: the later waves were not applied."""

    reason = "SyncWaveNotHealthy"


@dataclass(frozen=True)
class Order:
    """Each desired object's wave, and every wave in the order it is applied."""

    wave: Mapping[ObjectRef, int]
    waves: tuple[int, ...]

    def part(self, objects: Mapping[ObjectRef, dict], wave: int) -> dict[ObjectRef, dict]:
        return {ref: obj for ref, obj in objects.items() if self.wave.get(ref, 0) == wave}

    def of(self, wave: int) -> list[ObjectRef]:
        return sorted(ref for ref, w in self.wave.items() if w == wave)


def wave_of(ref: ObjectRef, obj: Mapping) -> int:
    """The object's sync wave; ``ApplyError`` naming the object for a bad value."""
    try:
        return argocd.sync_wave(argocd.notes_of(obj))
    except argocd.Invalid as exc:
        raise ApplyError(f"{ref}: {exc}", obj=str(ref)) from exc


def order(desired: Mapping[ObjectRef, dict],
          sync_hooks: Iterable[tuple[ObjectRef, int]] = ()) -> Order | None:
    """The waves of ``desired`` (with the ``(ref, wave)`` of each Sync hook, which take
    part in the Namespace and CRD rule and add their waves); None when nothing has a
    wave annotation and there is no Sync hook."""
    hooks = list(sync_hooks)
    if not hooks and not any(argocd.SYNC_WAVE in argocd.notes_of(obj)
                             for obj in desired.values()):
        return None
    wave = {ref: wave_of(ref, obj) for ref, obj in desired.items()}
    users = list(wave.items()) + hooks
    by_namespace: dict[str, int] = {}
    by_kind: dict[tuple[str, str], int] = {}
    for ref, w in users:
        if ref.namespace:
            by_namespace[ref.namespace] = min(w, by_namespace.get(ref.namespace, w))
        key = (ref.group, ref.kind)
        by_kind[key] = min(w, by_kind.get(key, w))
    for ref in wave:
        if is_namespace(ref) and ref.name in by_namespace:
            wave[ref] = min(wave[ref], by_namespace[ref.name])
        elif is_crd(ref):
            made = by_kind.get(_defines(desired[ref]))
            wave[ref] = wave[ref] if made is None else min(wave[ref], made)
    waves = sorted(set(wave.values()) | {w for _, w in hooks})
    return Order(wave, tuple(waves))


def _defines(crd: Mapping) -> tuple[str, str]:
    """(group, kind) of the objects a CRD defines."""
    spec = crd.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    names = spec.get("names")
    names = names if isinstance(names, Mapping) else {}
    return str(spec.get("group", "")), str(names.get("kind", ""))


def apply(objects: Mapping[ObjectRef, dict], plan: Order | None,
          apply_part: Callable[[Mapping[ObjectRef, dict]], Outcome],
          between: Callable[[int, Outcome], None]) -> Outcome:
    """Apply ``objects`` wave by wave (all at once without a ``plan``); ``between`` runs
    after each wave. A failed write or a failing ``between`` stops it (``halted``);
    a lost lock is raised at once, as in ``apply_all``."""
    if plan is None:
        return apply_part(objects)
    total = Outcome()
    for wave in plan.waves:
        part = plan.part(objects, wave)
        done = apply_part(part) if part else Outcome()
        total.done.update(done.done)
        total.failed.update(done.failed)
        total.replaced |= done.replaced
        if total.failed:
            return total
        try:
            between(wave, total)
        except LockLost:
            raise
        except FleetsyncError as exc:
            total.halted = exc
            return total
    return total


def later(plan: Order, wave: int, writes: Iterable[ObjectRef],
          hook_waves: Iterable[int]) -> bool:
    """Whether anything is written after ``wave``: only then is ``wave`` waited for."""
    return any(plan.wave.get(ref, 0) > wave for ref in writes) or \
        any(w > wave for w in hook_waves)
