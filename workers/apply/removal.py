"""An application leaves the fleet spec (or stops targeting a cluster): what it applied there.

``onRemoval`` says what happens to the objects in its inventory:

- ``orphan`` (the default): they stay, without fleetsync's ownership label, so
  nothing of fleetsync claims them any more (another application may adopt
  them, nobody prunes them);
- ``prune``: they are deleted, in reverse apply order, with the same care as a
  prune (a uid precondition, never a protected Namespace, never a Namespace that
  still holds others' objects), except an object whose annotations say it stays
  (``argocd.argoproj.io/sync-options: Delete=false``, Flux's ``prune: disabled``
  or ``reconcile: disabled``): that one is orphaned and named.

Either way the inventory goes last, so a removal that fails part way is taken up
again from what is left. Only objects still labelled for this application are
touched. It runs with fleetsync's own credential: the application's identity
went with its spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.errors import FleetsyncError
from workers.apply import annotations as notes
from workers.apply import inventory as inv
from workers.apply.discovery import PROCESS, Discovery
from workers.apply.kube import Kube, NotFound
from workers.apply.occupied import _namespaced, holders
from workers.apply.policy import never_pruned
from workers.apply.refs import APP_LABEL, ObjectRef, is_namespace, owner_of, prune_order

ORPHAN, PRUNE = "orphan", "prune"


@dataclass
class Removed:
    orphaned: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)          # with why

    def summary(self) -> str:
        parts = [f"{len(self.orphaned)} orphaned" if self.orphaned else "",
                 f"{len(self.pruned)} pruned" if self.pruned else "",
                 f"{len(self.kept)} kept ({'; '.join(self.kept[:3])})" if self.kept else ""]
        return ", ".join(p for p in parts if p) or "nothing was left"


def remove_unit(kube: Kube, app: str, mode: str, discovery: Discovery = PROCESS) -> Removed:
    """Orphan or prune what ``app`` applied on this cluster, then drop its inventory."""
    kube = kube.own()
    stored = inv.read(kube, app)
    done, stayed = Removed(), set[ObjectRef]()
    found = discovery.lookup(kube, stored.refs)
    for ref in prune_order(list(stored.refs)):
        resource = found.get(ref)
        if resource is None:
            continue                      # its kind is gone from the cluster
        path = resource.path(ref)
        live = kube.get_or_none(path)
        if live is None or owner_of(live) != app:
            continue                      # gone, or no longer this application's
        if mode == PRUNE:
            why = _stays(live, ref) or _keep(kube, ref, app, set(stored.refs) - stayed, discovery)
            if why:
                stayed.add(ref)
                done.kept.append(f"{ref}: {why}")
                _orphan(kube, path)
                continue
            try:
                kube.delete(path, uid=(live.get("metadata") or {}).get("uid"))
            except NotFound:
                pass
            done.pruned.append(str(ref))
        else:
            _orphan(kube, path)
            done.orphaned.append(str(ref))
    if stored.resource_version is not None:
        try:
            kube.delete(f"{inv.CONFIGMAPS}/{inv.name_for(app)}")
        except NotFound:
            pass
    return done


def _orphan(kube: Kube, path: str) -> None:
    kube.merge_patch(path, {"metadata": {"labels": {APP_LABEL: None}}})


def _stays(live: dict, ref: ObjectRef) -> str:
    """Why the live object's annotations keep it (one that cannot be read is kept too)."""
    try:
        return notes.read(live, str(ref)).delete
    except notes.AnnotationError as exc:
        return f"kept: {exc.message}"


def _keep(kube: Kube, ref: ObjectRef, app: str, going: set[ObjectRef],
          discovery: Discovery) -> str:
    if never_pruned(ref):
        return "a namespace fleetsync never prunes"
    if not is_namespace(ref):
        return ""
    try:
        held = holders(kube, ref.name, _namespaced(discovery.catalog(kube)), app, going)
    except FleetsyncError as exc:
        return f"could not see what it holds: {exc}"
    return f"still holds {', '.join(held[:3])}" if held else ""
