"""Per-object annotations of Argo CD and Flux, read as fleetsync's own per-object behaviour. Pure.

Repositories written for Argo CD or Flux say on an object how it is to be
applied, pruned or left alone. ``read`` turns an object's annotations into one
``Behaviour``; the engine asks it at the few points where it decides what to
write (``held``, ``Behaviour.force``, ``replace``, ``validate``), what to prune
(``settle``: a leftover kept on the cluster) and what to delete when the
application is removed (``Behaviour.delete``). Every value maps onto something
fleetsync already does (``force``, ``createNamespace``, prune disabled, leaving
an object alone), so there is one mechanism per behaviour:

    argocd.argoproj.io/sync-options     Prune=false|confirm, Delete=false|confirm,
                                        Replace=true, Force=true, ServerSideApply=true,
                                        Validate=false, CreateNamespace=true
    argocd.argoproj.io/compare-options  IgnoreExtraneous
    kustomize.toolkit.fluxcd.io/prune      disabled
    kustomize.toolkit.fluxcd.io/ssa        Override | Merge | IfNotPresent | Ignore
    kustomize.toolkit.fluxcd.io/force      enabled
    kustomize.toolkit.fluxcd.io/reconcile  disabled (an annotation or a label)
    fluxcd.io/ignore                       "true" (or Flux v1's "sync_only")

An option fleetsync does not know is a warning naming the object (Argo CD
ignores unknown options too); a value that cannot be read is an
``AnnotationError`` naming the object and the annotation, before anything is
written. What is left alone is decided from the desired object, and from the
live one when Git does not say (``kubectl annotate ... reconcile=disabled``
pauses an object, as with Flux; ``enabled`` in Git resumes it). What a
leftover (no longer in Git) may do is read from the live object, the only
place it still has annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping

from shared.errors import ApplyError
from workers.apply.plan import PRUNED, SKIPPED, Change, ChangeSet
from workers.apply.refs import ObjectRef, apply_key, ref_of

SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
COMPARE_OPTIONS = "argocd.argoproj.io/compare-options"
FLUX_PRUNE = "kustomize.toolkit.fluxcd.io/prune"
FLUX_SSA = "kustomize.toolkit.fluxcd.io/ssa"
FLUX_FORCE = "kustomize.toolkit.fluxcd.io/force"
FLUX_RECONCILE = "kustomize.toolkit.fluxcd.io/reconcile"
FLUX_IGNORE = "fluxcd.io/ignore"
KEPT_PREFIX = "left on the cluster"
EXTRANEOUS = f"{COMPARE_OPTIONS}: IgnoreExtraneous"

# Argo CD option -> the values it takes (its values are case-sensitive, as in Argo CD)
_OPTIONS: dict[str, tuple[str, ...]] = {
    "Prune": ("true", "false", "confirm"), "Delete": ("true", "false", "confirm"),
    "Replace": ("true", "false"), "Force": ("true", "false"),
    "ServerSideApply": ("true", "false"), "Validate": ("true", "false"),
    "CreateNamespace": ("true", "false"),
}
# Flux annotation -> the values it takes (compared without case, as Flux does)
_FLUX: dict[str, tuple[str, ...]] = {
    FLUX_PRUNE: ("enabled", "disabled"), FLUX_FORCE: ("enabled", "disabled"),
    FLUX_RECONCILE: ("enabled", "disabled"),
    FLUX_SSA: ("override", "merge", "ifnotpresent", "ignore"),
    FLUX_IGNORE: ("true", "false", "sync_only"),      # sync_only: Flux v1's "skip when syncing"
}

_KEYS = (SYNC_OPTIONS, COMPARE_OPTIONS, *_FLUX)


class AnnotationError(ApplyError):
    """An annotation of Argo CD or Flux whose value cannot be read; nothing was written."""

    reason = "InvalidAnnotation"


@dataclass(frozen=True)
class Behaviour:
    """What one object's annotations ask; each reason names the annotation ("": as usual)."""

    hold: str = ""                  # never written (and never pruned): why
    keep: str = ""                  # never pruned when it leaves Git: why
    delete: str = ""                # not deleted when the application is removed: why
    if_not_present: bool = False    # created when missing, never updated afterwards
    replace: bool = False           # written whole (PUT, or POST to create), not applied
    force: bool = False             # deleted and created again when an update is refused
    validate: bool = True           # False: fieldValidation=Ignore on its writes and dry-runs
    create_namespace: bool = False  # its namespace is created when missing
    extraneous: bool = False        # IgnoreExtraneous: not counted when left over
    warnings: tuple[str, ...] = ()


AS_USUAL = Behaviour()


def notes_of(obj: Mapping | None) -> tuple[Mapping, Mapping]:
    """(annotations, labels) of an object, empty when absent or not maps."""
    meta = (obj or {}).get("metadata") or {}
    notes, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    return (notes if type(notes) is dict or isinstance(notes, Mapping) else {},  # dict: fast
            labels if type(labels) is dict or isinstance(labels, Mapping) else {})


def read(obj: Mapping, where: str = "") -> Behaviour:
    """The behaviour ``obj``'s annotations ask for; ``AnnotationError`` when one is malformed.
    ``where`` names the object in messages (default: its ref)."""
    notes, labels = notes_of(obj)
    if not any(k in notes for k in _KEYS) and FLUX_RECONCILE not in labels:
        return AS_USUAL
    where = where or str(ref_of(dict(obj)))
    argo = _argo_options(notes, where)
    flux = {key: _flux_value(notes, labels, key, where) for key in _FLUX}
    warnings = list(argo.pop("", ()))
    return Behaviour(
        hold=_hold(flux),
        keep=_stays(argo, flux, "Prune"), delete=_stays(argo, flux, "Delete"),
        if_not_present=flux[FLUX_SSA] == "ifnotpresent",
        replace=argo.get("Replace") == "true",
        force=argo.get("Force") == "true" or flux[FLUX_FORCE] == "enabled",
        validate=argo.get("Validate") != "false",
        create_namespace=argo.get("CreateNamespace") == "true",
        extraneous="IgnoreExtraneous" in _compare_options(notes, where, warnings),
        warnings=tuple(warnings) + _argo_warnings(argo, where))


def _stays(argo: Mapping[str, str], flux: Mapping[str, str], option: str) -> str:
    """Why the object is not deleted (``option``: Prune when it leaves Git, Delete when
    the application is removed); Flux's annotations say both at once."""
    if argo.get(option) in ("false", "confirm"):
        return f"{SYNC_OPTIONS}: {option}={argo[option]}"
    for key in (FLUX_PRUNE, FLUX_RECONCILE):
        if flux[key] == "disabled":
            return f"{key}: disabled"
    return ""


def _hold(flux: Mapping[str, str]) -> str:
    if flux[FLUX_IGNORE] in ("true", "sync_only"):
        return f'{FLUX_IGNORE}: "{flux[FLUX_IGNORE]}": skipped'
    if flux[FLUX_RECONCILE] == "disabled":
        return f"{FLUX_RECONCILE}: disabled: neither applied nor pruned"
    if flux[FLUX_SSA] == "ignore":
        return f"{FLUX_SSA}: Ignore: not applied"
    return ""


def _text(notes: Mapping, key: str, where: str) -> str:
    value = notes.get(key)
    if not isinstance(value, str):
        raise AnnotationError(f"{where}: annotation {key} must be a string, not "
                              f"{type(value).__name__}", obj=where)
    return value


def _argo_options(notes: Mapping, where: str) -> dict:
    """``{option: value}`` of sync-options; key "" holds the warnings of unknown options."""
    if SYNC_OPTIONS not in notes:
        return {}
    found: dict = {"": []}
    for token in (t.strip() for t in _text(notes, SYNC_OPTIONS, where).split(",")):
        if not token:
            continue
        key, eq, value = (part.strip() for part in token.partition("="))
        if not eq or not key or not value:
            raise AnnotationError(f"{where}: annotation {SYNC_OPTIONS}: {_short(token)!r} is "
                                  "not Option=value", obj=where)
        if key not in _OPTIONS:
            found[""].append(f"{where}: {SYNC_OPTIONS}: {_short(token)} is not supported by "
                             "fleetsync; ignored")
            continue
        if value not in _OPTIONS[key]:
            raise AnnotationError(f"{where}: annotation {SYNC_OPTIONS}: {key}={_short(value)!r}; "
                                  f"{key} takes {' or '.join(_OPTIONS[key])}", obj=where)
        found[key] = value
    return found


def _argo_warnings(argo: Mapping[str, str], where: str) -> tuple[str, ...]:
    """Known options whose value fleetsync cannot honour as asked."""
    out = []
    if argo.get("ServerSideApply") == "false":
        out.append(f"{where}: {SYNC_OPTIONS}: ServerSideApply=false: fleetsync always uses "
                   "server-side apply")
    for key in ("Prune", "Delete"):
        if argo.get(key) == "confirm":
            out.append(f"{where}: {SYNC_OPTIONS}: {key}=confirm: fleetsync has no "
                       f"confirmation step; kept as {key}=false")
    if argo.get("Validate") == "false" and argo.get("Replace") != "true":
        out.append(f"{where}: {SYNC_OPTIONS}: Validate=false without Replace=true: a "
                   "server-side apply refuses fields the schema does not declare whatever "
                   "is asked")
    if argo.get("Force") == "true" and argo.get("Replace") != "true":
        out.append(f"{where}: {SYNC_OPTIONS}: Force=true without Replace=true: re-created "
                   "only when an immutable field changed")
    return tuple(out)


def _compare_options(notes: Mapping, where: str, warnings: list[str]) -> set[str]:
    if COMPARE_OPTIONS not in notes:
        return set()
    options = {t.strip() for t in _text(notes, COMPARE_OPTIONS, where).split(",") if t.strip()}
    for option in sorted(options - {"IgnoreExtraneous"}):
        warnings.append(f"{where}: {COMPARE_OPTIONS}: {_short(option)} is not supported by "
                        "fleetsync; ignored")
    return options


def _flux_value(notes: Mapping, labels: Mapping, key: str, where: str) -> str:
    """The Flux annotation's value in lower case ("" when absent); the reconcile label too."""
    source = notes if key in notes else labels if key == FLUX_RECONCILE and key in labels else None
    if source is None:
        return ""
    value = source[key]
    if not isinstance(value, str) or value.strip().lower() not in _FLUX[key]:
        shown = _short(value) if isinstance(value, str) else type(value).__name__
        raise AnnotationError(f"{where}: annotation {key}: {shown!r}; it takes "
                              f"{' or '.join(_FLUX[key])}", obj=where)
    return value.strip().lower()


def _short(text: str, limit: int = 60) -> str:
    """A value from a render, cut to a length that keeps messages readable."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _says(obj: Mapping, keys: Iterable[str]) -> bool:
    notes, labels = notes_of(obj)
    return any(k in notes for k in keys) or FLUX_RECONCILE in labels


def of_desired(desired: Mapping, live: Mapping | None) -> Behaviour:
    """A desired object's behaviour; what leaves it alone comes from the live object when
    Git does not say (an object paused in the cluster stays paused)."""
    wanted = read(desired)
    if wanted.hold or live is None or _says(desired, (FLUX_RECONCILE, FLUX_IGNORE, FLUX_SSA)):
        return wanted
    hold = read(live, f"{ref_of(dict(desired))} (live)").hold
    return replace(wanted, hold=hold) if hold else wanted


def held(desired: Mapping[ObjectRef, Mapping], live: Mapping[ObjectRef, Mapping | None]
         ) -> dict[ObjectRef, str]:
    """The desired objects that are not to be written, and why."""
    out = {}
    for ref, obj in desired.items():
        how, there = of_desired(obj, live.get(ref)), live.get(ref)
        if how.hold:
            out[ref] = how.hold
        elif how.if_not_present and there is not None:
            out[ref] = f"{FLUX_SSA}: IfNotPresent: exists, not updated"
    return out


def others(desired: Mapping[ObjectRef, dict], held_refs: Mapping[ObjectRef, str]
           ) -> dict[ObjectRef, dict]:
    """The desired objects that are written as usual."""
    return {ref: obj for ref, obj in desired.items() if ref not in held_refs}


def settle(changeset: ChangeSet, held_refs: Mapping[ObjectRef, str],
           live: Mapping[ObjectRef, Mapping | None], inventory: Iterable[ObjectRef]
           ) -> ChangeSet:
    """The plan after the annotations: held objects skipped (and kept in the inventory
    when they were in it), leftovers whose live object says so kept on the cluster."""
    before = set(inventory)
    kept = [r for r in changeset.kept if r not in held_refs]
    entries = []
    for change in changeset.entries:
        if change.ref in held_refs:
            continue
        if change.action == PRUNED:
            how = read(live.get(change.ref) or {}, f"{change.ref} (live)")
            quiet = f"; {EXTRANEOUS}" if how.extraneous else ""
            if how.keep:
                change = Change(change.ref, SKIPPED, f"{KEPT_PREFIX} ({how.keep}{quiet})")
                kept.append(change.ref)
            elif quiet:
                change = replace(change, reason=f"{change.reason} ({EXTRANEOUS})")
        entries.append(change)
    skipped = [Change(ref, SKIPPED, why) for ref, why in held_refs.items()]
    kept += [ref for ref in held_refs if ref in before]
    ordered = sorted([c for c in entries if c.action != PRUNED] + skipped,
                     key=lambda c: apply_key(c.ref))
    return ChangeSet(tuple(ordered + [c for c in entries if c.action == PRUNED]), tuple(kept))


def reported(changeset: ChangeSet) -> list[str]:
    """Leftovers kept on the cluster by an annotation, as lines, unless IgnoreExtraneous."""
    return [f"{c.ref}: no longer in Git, {c.reason}" for c in changeset.by_action(SKIPPED)
            if c.reason.startswith(KEPT_PREFIX) and EXTRANEOUS not in c.reason]


def spared(changeset: ChangeSet) -> ChangeSet:
    """Under ``drift: detect``: an IgnoreExtraneous leftover is not drift, so it is not
    pruned either (detect writes nothing); it stays in the inventory."""
    quiet = [c.ref for c in changeset.to_prune() if EXTRANEOUS in c.reason]
    if not quiet:
        return changeset
    entries = tuple(Change(c.ref, SKIPPED, f"{KEPT_PREFIX} (drift: detect; {EXTRANEOUS})")
                    if c.ref in quiet else c for c in changeset.entries)
    return ChangeSet(entries, changeset.kept + tuple(quiet))


def warnings(objects: Iterable[Mapping]) -> list[str]:
    """Every warning about the annotations of rendered objects (read before: never raises)."""
    out: list[str] = []
    for obj in objects:
        try:
            out.extend(read(obj).warnings)
        except AnnotationError:
            continue
    return out


def behaviours(objects: Mapping[ObjectRef, Mapping]) -> dict[ObjectRef, Behaviour]:
    """The behaviour of each object to write that differs from the usual."""
    out = {ref: read(obj) for ref, obj in objects.items()}
    return {ref: how for ref, how in out.items() if how is not AS_USUAL}
