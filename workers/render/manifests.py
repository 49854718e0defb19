"""From loaded YAML documents to the desired objects of one sync unit.

Pure functions over plain dicts, shared by plain-YAML and kustomize renders:
``List`` expansion, the three fields every object needs, the default namespace
for namespaced objects, duplicate detection, and one stable order (Namespaces
and CRDs first, then kind, namespace, name) so that two renders of the same
input are byte-for-byte equal and the apply stage can apply in this order.

A repository holds YAML that is not Kubernetes (CI config, chart values, data
files). A document that is clearly not an object (not a mapping, or neither
``apiVersion`` nor ``kind``) is skipped with a warning; half of one (one of the
two, or no ``metadata.name``) is refused, since that is a mistake in a manifest.
Objects fleetsync cannot manage are refused with what to do instead: one with
only ``metadata.generateName`` (it could never be found again to update or
prune) and Helm hooks outside a chart (``helm.sh/hook``), whose lifecycle
belongs to helm; a chart's render passes ``helm_hooks`` and keeps its
``helm.sh/hook`` objects, annotations and all, for the apply engine. Argo CD's
hooks (``argocd.argoproj.io/hook``) are kept for the apply engine too, a
``generateName`` one included (the engine names it per revision); their
annotations and every ``argocd.argoproj.io/sync-wave`` are checked here
(``shared.argocd``), so a bad value fails with its file and line.

Scope is decided without an API server: ``is_cluster_scoped`` knows the
built-in cluster-scoped kinds and treats everything else as namespaced. The
apply stage may pass its own discovery-backed predicate instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from shared import argocd
from shared.errors import RenderError

# (API group, kind) of the built-in cluster-scoped resources we know about.
CLUSTER_SCOPED: frozenset[tuple[str, str]] = frozenset({
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
    ("apiregistration.k8s.io", "APIService"),
    ("networking.k8s.io", "IngressClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("snapshot.storage.k8s.io", "VolumeSnapshotClass"),
})
CLUSTER_SCOPED_KINDS: frozenset[str] = frozenset(kind for _, kind in CLUSTER_SCOPED)

# Applied first, in this order: everything else may live in or depend on them.
FIRST_KINDS: dict[tuple[str, str], int] = {
    ("", "Namespace"): 0,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): 1,
}

ScopePredicate = Callable[[str, str], bool]

HOOKS = {
    "helm.sh/hook": "a Helm hook outside a chart",
}


def group_of(api_version: str) -> str:
    """``apps/v1`` -> ``apps``; ``v1`` -> ``""`` (the core group)."""
    return api_version.rpartition("/")[0]


def is_cluster_scoped(kind: str, api_version: str) -> bool:
    """Whether ``kind`` in ``api_version`` is cluster-scoped, as far as we know offline."""
    return (group_of(api_version), kind) in CLUSTER_SCOPED


@dataclass(frozen=True)
class Located:
    """One object and where it came from: ``file`` and document ``line``."""

    obj: Any
    where: str

    def item(self, index: int) -> "Located":
        return Located(self.obj["items"][index], f"{self.where} items[{index}]")


def expand_lists(docs: Iterable[Located]) -> list[Located]:
    """Replace every ``kind: List`` by its items (recursively), keeping places."""
    out: list[Located] = []
    for doc in docs:
        if isinstance(doc.obj, dict) and doc.obj.get("kind") == "List" and "items" in doc.obj:
            items = doc.obj["items"] or []
            if not isinstance(items, list):
                raise RenderError(f"{doc.where}: List items must be a list")
            out.extend(expand_lists(doc.item(i) for i in range(len(items))))
        else:
            out.append(doc)
    return out


def _missing(obj: Any) -> list[str]:
    if not isinstance(obj, dict):
        return []
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not name and isinstance(meta, dict) and argocd.is_hook(obj):
        name = meta.get("generateName")
    wanted = [("apiVersion", obj.get("apiVersion")), ("kind", obj.get("kind")),
              ("metadata.name", name)]
    return [field for field, value in wanted if not isinstance(value, str) or not value]


def not_an_object(obj: Any) -> str | None:
    """Why a document is clearly not a Kubernetes object, or None when it may be one."""
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}, not a mapping"
    if "apiVersion" not in obj and "kind" not in obj:
        return "no apiVersion and no kind"
    return None


def skip_non_objects(docs: Iterable[Located]) -> tuple[list[Located], list[str]]:
    """The documents that may be objects, and a warning for each one skipped."""
    kept: list[Located] = []
    warnings: list[str] = []
    for doc in docs:
        why = not_an_object(doc.obj)
        if why is None:
            kept.append(doc)
        else:
            warnings.append(f"{doc.where}: skipped, not a Kubernetes object ({why})")
    return kept, warnings


def _unmanageable(doc: Located, helm_hooks: bool = False) -> str | None:
    """Why fleetsync cannot manage this object, with what to do instead; or None."""
    meta = doc.obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    what = f"{doc.obj.get('kind', 'object')} {meta.get('name') or meta.get('generateName') or ''}".strip()
    found = meta.get("annotations")
    annotations: dict[str, Any] = found if isinstance(found, dict) else {}
    for key, name in HOOKS.items():
        if key in annotations and not (helm_hooks and key == "helm.sh/hook"):
            return (f"{what} is {name} ({key}: {annotations[key]}); fleetsync runs Helm hooks "
                    "of a chart and Argo CD hooks (argocd.argoproj.io/hook): render it as part "
                    "of its chart, use the Argo CD annotation, or remove the annotation to "
                    "apply it as an ordinary object")
    wrong = argocd.problem(doc.obj)
    if wrong:
        return f"{what}: {wrong}"
    if not meta.get("name") and meta.get("generateName") and argocd.HOOK not in annotations:
        return (f"{what} has metadata.generateName and no metadata.name; fleetsync applies "
                "objects by name and could never find a generated one again to update or prune "
                "it: give it a fixed metadata.name")
    return None


def check_object(doc: Located, helm_hooks: bool = False) -> None:
    """Refuse an object without apiVersion, kind or metadata.name, naming its place."""
    if not isinstance(doc.obj, dict):
        raise RenderError(f"{doc.where}: a document must be a mapping, found {type(doc.obj).__name__}")
    refusal = _unmanageable(doc, helm_hooks)
    if refusal:
        raise RenderError(f"{doc.where}: {refusal}")
    missing = _missing(doc.obj)
    if missing:
        raise RenderError(f"{doc.where}: object has no {', '.join(missing)}")
    namespace = doc.obj["metadata"].get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise RenderError(f"{doc.where}: metadata.namespace must be a string")


def identity(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name): what makes two objects the same object."""
    meta = obj["metadata"]
    name = meta.get("name") or meta["generateName"]          # an Argo CD hook may have only it
    return group_of(obj["apiVersion"]), obj["kind"], meta.get("namespace") or "", name


def describe(key: tuple[str, str, str, str]) -> str:
    group, kind, namespace, name = key
    kind = f"{kind}.{group}" if group else kind
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def with_defaults(obj: dict[str, Any], namespace: str | None, scoped: ScopePredicate) -> dict[str, Any]:
    """A copy without ``status`` and with ``namespace`` set where one is needed and absent."""
    out = {k: v for k, v in obj.items() if k != "status"}
    if namespace and not scoped(obj["kind"], obj["apiVersion"]) and not obj["metadata"].get("namespace"):
        out["metadata"] = {**obj["metadata"], "namespace": namespace}
    return out


def refuse_duplicates(docs: list[Located]) -> None:
    first: dict[tuple[str, str, str, str], str] = {}
    for doc in docs:
        key = identity(doc.obj)
        if key in first:
            raise RenderError(f"{describe(key)} is defined twice: in {first[key]} and in {doc.where}",
                              obj=describe(key))
        first[key] = doc.where


def order_key(obj: dict[str, Any]) -> tuple[int, str, str, str, str]:
    group, kind, namespace, name = identity(obj)
    return FIRST_KINDS.get((group, kind), len(FIRST_KINDS)), kind, group, namespace, name


def normalize(docs: Iterable[Located], namespace: str | None = None,
              scoped: ScopePredicate = is_cluster_scoped) -> list[dict[str, Any]]:
    """The desired objects: Lists expanded, checked, defaulted, unique, ordered."""
    return normalize_report(docs, namespace, scoped)[0]


def normalize_report(docs: Iterable[Located], namespace: str | None = None,
                     scoped: ScopePredicate = is_cluster_scoped, helm_hooks: bool = False
                     ) -> tuple[list[dict[str, Any]], list[str]]:
    """``normalize``, and a warning for every document skipped as not an object.

    ``helm_hooks``: a chart's render, whose ``helm.sh/hook`` objects are kept."""
    flat, warnings = skip_non_objects(expand_lists(docs))
    for doc in flat:
        check_object(doc, helm_hooks)
    defaulted = [Located(with_defaults(d.obj, namespace, scoped), d.where) for d in flat]
    refuse_duplicates(defaulted)
    return sorted((d.obj for d in defaulted), key=order_key), warnings
