"""Why a kind is unknown to a cluster, told precisely enough to fix it.

"Unknown kind" has three common causes that want three different fixes, and a
generic "is its CRD installed?" misleads for two of them:

* a built-in kind in a group/version the cluster no longer (or not yet) serves:
  ``policy/v1beta1 is not served by this cluster (Kubernetes v1.37); use
  policy/v1`` (the served version is found in discovery, in the same group or,
  for a kind that moved, in another one: ``extensions/v1beta1`` Ingress);
* a CustomResourceDefinition that exists but does not serve that version (or is
  not established yet): name the CRD and the versions it serves;
* no CRD at all for the kind: install it first, or in the same application.

``explain`` costs two reads (``/version`` and the CRD list) and runs only on
the error path; if either is refused, the hint is made without it.
``hint`` is pure and takes what was read.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from shared.errors import ApplyError, FleetsyncError
from workers.apply.kube import Kube
from workers.apply.refs import ObjectRef

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TypeKey = tuple[str, str]          # (apiVersion, kind)


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _crd_for(ref: ObjectRef, crds: Iterable[dict]) -> dict | None:
    for crd in crds:
        spec = crd.get("spec") or {}
        if spec.get("group") == ref.group and (spec.get("names") or {}).get("kind") == ref.kind:
            return crd
    return None


def _crd_hint(ref: ObjectRef, crd: dict) -> str:
    spec = crd.get("spec") or {}
    name = (crd.get("metadata") or {}).get("name", "")
    served = [f"{spec.get('group')}/{v.get('name')}" for v in spec.get("versions") or []
              if v.get("served", True)]
    if ref.api_version in served:
        return (f"the CustomResourceDefinition {name} serves {ref.api_version} but is not "
                "established yet; look at its status conditions")
    serves = ", ".join(served) if served else "no version"
    return (f"{ref.api_version} is not served by the CustomResourceDefinition {name} (it serves "
            f"{serves}); use one of those, or add the version to the CRD")


def builtin(group: str) -> bool:
    """Whether an API group belongs to Kubernetes: CRD groups need a dot, and ``*.k8s.io``
    and ``*.kubernetes.io`` are reserved for the project's own APIs."""
    return "." not in group or group.endswith((".k8s.io", ".kubernetes.io"))


def hint(ref: ObjectRef, served: Iterable[TypeKey], crds: Iterable[dict] | None,
         server_version: str) -> str:
    """Why ``ref``'s (apiVersion, kind) is unknown, and what to do; pure.

    ``crds`` is None when the CRD list could not be read.
    """
    crd = _crd_for(ref, crds or [])
    if crd is not None:
        return _crd_hint(ref, crd)
    cluster = f"this cluster (Kubernetes {server_version})" if server_version else "this cluster"
    if builtin(ref.group):
        same_kind = [api for api, kind in served if kind == ref.kind]
        in_group = [api for api in same_kind if _group(api) == ref.group]
        instead = (in_group or same_kind)[:1]
        if instead:
            return f"{ref.api_version} is not served by {cluster}; use {instead[0]}"
        return f"kind {ref.kind} is not served in {ref.api_version} by {cluster}"
    if crds is None:
        return (f"kind {ref.kind} in {ref.api_version} is not served by {cluster}; is its "
                "CustomResourceDefinition installed and established? (the CRD list could not be read)")
    return (f"no CustomResourceDefinition defines kind {ref.kind} in group {ref.group} on "
            f"{cluster}: install the CRD first, or add it to this application")


def server_version(kube: Kube) -> str:
    """``v1.37`` from ``/version``, or ``""`` when it cannot be read."""
    try:
        info = kube.own().get("/version")
    except FleetsyncError:
        return ""
    major, minor = str(info.get("major", "")), str(info.get("minor", "")).rstrip("+")
    return f"v{major}.{minor}" if major and minor else str(info.get("gitVersion", ""))


def _crds(kube: Kube) -> list[dict] | None:
    try:
        return kube.own().list_items(CRDS)
    except FleetsyncError:
        return None


def explain(kube: Kube, unknown: list[ObjectRef], served: Mapping[TypeKey, object]) -> ApplyError:
    """One ``ApplyError`` with a precise hint per object whose kind the cluster does not serve."""
    version, crds = server_version(kube), _crds(kube)
    lines = [f"{ref}: {hint(ref, served, crds, version)}" for ref in unknown]
    sep = " " if len(lines) == 1 else "\n  "
    return ApplyError(f"unknown kind for {len(lines)} object(s):{sep}" + sep.join(lines),
                      obj=str(unknown[0]))
