"""Who changed a drifted field, and when: read from the live object's ``managedFields``. Pure.

Server-side apply records, per field manager, the fields it owns (``fieldsV1``)
and when it last wrote them. A field that drifted from Git is owned now by
whoever changed it (``kubectl``, ``kubectl-scale``, an operator, an HPA's
``kube-controller-manager``), so a drift line can say
``spec.replicas: 5 -> 3 (by kubectl-scale at 10:42:07)``. fleetsync's own
manager is never named: it is the one the field is put back for.

Paths are drift's own (``spec.template.spec.containers[web].image``): a name
in brackets is the item of a keyed list (``k:{"name":"web"}``), a number an
index (matched to the list as a whole).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

OURS = "fleetsync"
_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[[^\]]*\])*)")


def steps(path: str) -> list[tuple[str, str]]:
    """``spec.containers[web].image`` -> [("f", "spec"), ("f", "containers"), ("k", "web"),
    ("f", "image")]; an index becomes ("i", "0")."""
    out: list[tuple[str, str]] = []
    for match in _SEGMENT.finditer(path):
        out.append(("f", match.group(1)))
        for key in re.findall(r"\[([^\]]*)\]", match.group(2)):
            out.append(("i" if key.isdigit() else "k", key))
    return out


def _child(tree: Mapping[str, Any], step: tuple[str, str]) -> Mapping[str, Any] | None:
    kind, key = step
    if kind == "f":
        found = tree.get(f"f:{key}")
        return found if isinstance(found, Mapping) else None
    if kind == "k":
        for name, sub in tree.items():
            if name.startswith("k:") and isinstance(sub, Mapping):
                try:
                    keyed = json.loads(name[2:])
                except ValueError:
                    continue
                if isinstance(keyed, dict) and key in {str(v) for v in keyed.values()}:
                    return sub
    return None


def owns(fields: Mapping[str, Any], path: str) -> bool:
    """Whether a ``fieldsV1`` tree holds ``path`` (or, for an index, its list)."""
    tree: Mapping[str, Any] | None = fields
    for step in steps(path):
        if step[0] == "i":
            return True                  # the list itself is owned: that is as precise as it gets
        tree = _child(tree, step) if tree is not None else None
        if tree is None:
            return False
    return True


def changed_by(managed: Iterable[Mapping[str, Any]] | None, path: str) -> str:
    """``by kubectl-scale at 10:42:07`` for the latest other manager owning ``path``, or ""."""
    owners = [(entry.get("time") or "", str(entry.get("manager") or "?"))
              for entry in managed or ()
              if entry.get("manager") != OURS and isinstance(entry.get("fieldsV1"), Mapping)
              and owns(entry["fieldsV1"], path)]
    if not owners:
        return ""
    when, manager = max(owners)
    clock = when[11:19] if len(when) >= 19 else when
    return f"by {manager} at {clock}" if clock else f"by {manager}"
