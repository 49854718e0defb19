"""``createNamespace``: the application's namespace, created and owned only when it was missing.

Users of Argo CD expect ``CreateNamespace=true``: an application whose
``namespace:`` does not exist yet should not fail with ``namespaces "x" not
found``. An object that says ``argocd.argoproj.io/sync-options:
CreateNamespace=true`` gets its own namespace the same way. The namespace is added to the render as one more desired object, so
it goes through the same plan, dry-run, apply, inventory and prune as the
rest, and carries the ownership label like everything fleetsync applies.

It is owned only if this application created it: when the namespace already
exists without this application's label (made by hand, by another tool, or by
another application), it is taken out of the desired objects again after
observing, so it is neither adopted, nor reported as a conflict, nor recorded
in the inventory, and therefore never pruned. Pure.
"""

from __future__ import annotations

import dataclasses

from shared.spec.model import Application
from workers.apply import annotations as notes
from workers.apply.observe import Observation
from workers.apply.refs import ObjectRef, is_namespace, owner_of, ref_of


def wanted(app: Application, objects: list[dict]) -> list[dict]:
    """The Namespaces to add to the render (none asked, or Git has them already): the
    application's with ``createNamespace``, and those of objects that ask for theirs."""
    names = [app.namespace] if app.create_namespace and app.namespace else []
    for obj in objects:
        namespace = (obj.get("metadata") or {}).get("namespace")
        if namespace and isinstance(namespace, str) and namespace not in names \
                and _asks(obj):
            names.append(namespace)
    there = {ref_of(obj).name for obj in objects if is_namespace(ref_of(obj))}
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            for name in names if name not in there]


def _asks(obj: dict) -> bool:
    """Whether the object asks for its namespace (a malformed ask is the plan's to refuse)."""
    try:
        return notes.read(obj).create_namespace
    except notes.AnnotationError:
        return False


def leave_foreign(seen: Observation, ref: ObjectRef, app: str) -> Observation:
    """``seen`` without the namespace among the desired objects when it exists and is not ours."""
    live = seen.live.get(ref)
    if live is None or owner_of(live) == app:
        return seen
    return dataclasses.replace(seen, desired={r: o for r, o in seen.desired.items() if r != ref})
