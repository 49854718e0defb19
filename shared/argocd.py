"""Argo CD's resource hooks and sync waves, read from an object's annotations. Pure.

Argo CD repositories say when an object is applied with three annotations:

- ``argocd.argoproj.io/hook``: a comma list of ``PreSync``, ``Sync``,
  ``PostSync``, ``SyncFail`` and ``Skip``; such an object is a hook, not desired
  state (``Skip`` alone: an object that is never applied);
- ``argocd.argoproj.io/hook-delete-policy``: a comma list of ``HookSucceeded``,
  ``HookFailed`` and ``BeforeHookCreation`` (Argo CD's default), given here in
  the Helm spelling the apply engine's hook runner speaks;
- ``argocd.argoproj.io/sync-wave``: an integer, negative allowed, 0 when absent.

Both the render (which names the file and line) and the apply engine (which
names the object) read them through this module, so the two can never disagree
on what a value means. A value Argo CD would quietly ignore (an unknown hook
type, a wave that is not an integer) is refused here: a hook that silently never
runs, or a wave that silently becomes 0, is worse than an error.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

HOOK = "argocd.argoproj.io/hook"
DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"
SYNC_WAVE = "argocd.argoproj.io/sync-wave"

PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL, SKIP = "PreSync", "Sync", "PostSync", "SyncFail", "Skip"
PHASES = (PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL)          # in the order a sync reaches them
PHASE_ORDER = {PRE_SYNC: -1, SYNC: 0, POST_SYNC: 1, SYNC_FAIL: 2}     # gitops-engine's
POLICIES = {"HookSucceeded": "hook-succeeded", "HookFailed": "hook-failed",
            "BeforeHookCreation": "before-hook-creation"}
DEFAULT_POLICY = frozenset({"before-hook-creation"})
_WAVE = re.compile(r"[+-]?[0-9]{1,9}")      # what strconv.Atoi reads, within 32 bits


class Invalid(ValueError):
    """An annotation with a value fleetsync does not honour; the text names the key."""


def notes_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    found = meta.get("annotations") if isinstance(meta, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def _items(notes: Mapping[str, Any], key: str) -> list[str]:
    value = notes.get(key)
    if not isinstance(value, str):
        raise Invalid(f"{key}: must be a string, found {type(value).__name__}")
    return [item.strip() for item in value.split(",") if item.strip()]


def hook_types(notes: Mapping[str, Any]) -> frozenset[str] | None:
    """The hook's types (``Skip`` among them when given), or None when it is no hook."""
    if HOOK not in notes:
        return None
    types = _items(notes, HOOK)
    unknown = [t for t in types if t not in PHASES and t != SKIP]
    if unknown or not types:
        shown = ", ".join(repr(t) for t in unknown) or "nothing"
        raise Invalid(f"{HOOK}: {shown} is not a hook fleetsync runs (one or more of "
                      f"{', '.join(PHASES)}, {SKIP})")
    return frozenset(types)


def skipped(types: frozenset[str] | None) -> bool:
    """``Skip`` alone: the object is not applied at all (with other types it is a hook)."""
    return types == frozenset({SKIP})


def delete_policies(notes: Mapping[str, Any]) -> frozenset[str]:
    """The hook's delete policies in the Helm spelling; BeforeHookCreation when none."""
    if DELETE_POLICY not in notes:
        return DEFAULT_POLICY
    given = _items(notes, DELETE_POLICY)
    unknown = [p for p in given if p not in POLICIES]
    if unknown:
        raise Invalid(f"{DELETE_POLICY}: {', '.join(repr(p) for p in unknown)} is not a "
                      f"delete policy (one or more of {', '.join(POLICIES)})")
    return frozenset(POLICIES[p] for p in given) or DEFAULT_POLICY


def sync_wave(notes: Mapping[str, Any]) -> int:
    """The object's sync wave: 0 without the annotation."""
    if SYNC_WAVE not in notes:
        return 0
    value = notes[SYNC_WAVE]
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not _WAVE.fullmatch(text):
        raise Invalid(f"{SYNC_WAVE}: {value!r} is not an integer (such as -1, 0 or 5)")
    return int(text)


def problem(obj: Mapping[str, Any]) -> str | None:
    """What is wrong with the object's Argo CD annotations, or None."""
    notes = notes_of(obj)
    try:
        types = hook_types(notes)
        if types is not None:
            delete_policies(notes)
        sync_wave(notes)
    except Invalid as exc:
        return str(exc)
    return None


def is_hook(obj: Mapping[str, Any]) -> bool:
    """Whether the object carries Argo CD's hook annotation (a hook, or skipped)."""
    return HOOK in notes_of(obj)
