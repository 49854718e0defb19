"""Which URL serves a kind, and whether it is namespaced: per-cluster discovery.

Objects name their type as (apiVersion, kind); the API is addressed by plural
resource paths. Discovery maps one to the other, per API server, cached for the
life of the process (``PROCESS``) because it changes only when CRDs or API
services come and go. It costs two requests with aggregated discovery
(``/api`` and ``/apis`` as ``APIGroupDiscoveryList``), and falls back to the
legacy per-group-version documents on servers that do not serve it.

An unknown kind triggers one refresh (a CRD may have just been established);
still unknown after that, it is an ``ApplyError`` naming the objects, with a
hint that tells a removed built-in version from a CRD that does not serve the
version from a missing CRD (``workers.apply.hints``). Kinds a
desired CRD is about to define are resolved from the CRD itself (``from_crd``),
so a CRD and its custom resources can go in one apply.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Mapping
from urllib.parse import quote

from workers.apply import hints
from workers.apply.kube import Kube, NotFound
from workers.apply.refs import ObjectRef

AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
TypeKey = tuple[str, str]          # (apiVersion, kind)


@dataclass(frozen=True)
class Resource:
    """Where objects of one (apiVersion, kind) live on the API server."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def base(self) -> str:
        prefix = "/apis" if "/" in self.api_version else "/api"    # core group: /api/v1
        return f"{prefix}/{self.api_version}"

    def collection(self, namespace: str = "") -> str:
        if self.namespaced and namespace:
            return f"{self.base()}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{self.base()}/{self.plural}"

    def path(self, ref: ObjectRef) -> str:
        return f"{self.collection(ref.namespace)}/{quote(ref.name, safe='')}"


# --- parsing (pure) -------------------------------------------------------------

def parse_aggregated(doc: Mapping) -> dict[TypeKey, Resource]:
    """Resources from an ``APIGroupDiscoveryList`` (``/api`` or ``/apis``)."""
    found: dict[TypeKey, Resource] = {}
    for group in doc.get("items") or []:
        name = (group.get("metadata") or {}).get("name") or ""
        for version in group.get("versions") or []:
            api_version = f"{name}/{version['version']}" if name else version["version"]
            for res in version.get("resources") or []:
                kind = (res.get("responseKind") or {}).get("kind")
                if kind and "/" not in res["resource"]:
                    found.setdefault((api_version, kind), Resource(
                        api_version, kind, res["resource"], res.get("scope") == "Namespaced"))
    return found


def parse_resource_list(doc: Mapping) -> dict[TypeKey, Resource]:
    """Resources from a legacy ``APIResourceList`` (``/api/v1``, ``/apis/<g>/<v>``)."""
    api_version = doc.get("groupVersion", "")
    return {(api_version, r["kind"]): Resource(api_version, r["kind"], r["name"],
                                               bool(r.get("namespaced")))
            for r in doc.get("resources") or [] if "/" not in r["name"]}


def group_versions(doc: Mapping) -> list[str]:
    """Every group/version in a legacy ``APIGroupList``."""
    return [v["groupVersion"] for g in doc.get("groups") or [] for v in g.get("versions") or []]


def from_crd(crd: Mapping) -> dict[TypeKey, Resource]:
    """The resources a CustomResourceDefinition defines, read from its spec."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    out: dict[TypeKey, Resource] = {}
    for version in spec.get("versions") or []:
        if version.get("served", True) and names.get("kind") and names.get("plural"):
            api_version = f"{spec.get('group')}/{version['name']}"
            out[(api_version, names["kind"])] = Resource(api_version, names["kind"],
                                                         names["plural"], namespaced)
    return out


# --- fetching -------------------------------------------------------------------

def fetch(kube: Kube) -> dict[TypeKey, Resource]:
    """Every resource the server serves: aggregated discovery, else the legacy documents
    (asked as fleetsync itself: what an application may do is not what exists)."""
    kube = kube.own()
    core = kube.get("/api", accept=AGGREGATED)
    if core.get("kind") == "APIGroupDiscoveryList":
        return {**parse_aggregated(core), **parse_aggregated(kube.get("/apis", accept=AGGREGATED))}
    return fetch_legacy(kube)


def fetch_legacy(kube: Kube) -> dict[TypeKey, Resource]:
    """One request per group/version: for servers older than aggregated discovery."""
    kube = kube.own()
    found = parse_resource_list(kube.get("/api/v1"))
    for group_version in group_versions(kube.get("/apis")):
        try:
            found.update(parse_resource_list(kube.get(f"/apis/{group_version}")))
        except NotFound:            # an aggregated API that went away mid-way
            continue
    return found


SERVERS_KEPT = 1024         # API servers whose catalog a process keeps (about 24 KB each)


class Discovery:
    """Discovery results per API server, shared by every ``Kube`` to that server; the
    least recently used are forgotten past ``servers`` (a fleet of thousands)."""

    def __init__(self, servers: int = SERVERS_KEPT) -> None:
        self._catalogs: OrderedDict[str, dict[TypeKey, Resource]] = OrderedDict()
        self._servers = servers
        self._lock = threading.Lock()

    def refresh(self, kube: Kube) -> dict[TypeKey, Resource]:
        catalog = fetch(kube)
        with self._lock:
            self._catalogs[kube.server] = catalog
            self._catalogs.move_to_end(kube.server)
            while len(self._catalogs) > self._servers:     # the least recently used goes
                self._catalogs.popitem(last=False)
        return catalog

    def catalog(self, kube: Kube) -> dict[TypeKey, Resource]:
        with self._lock:
            cached = self._catalogs.get(kube.server)
            if cached is not None:
                self._catalogs.move_to_end(kube.server)
        return cached if cached is not None else self.refresh(kube)

    def lookup(self, kube: Kube, refs: Iterable[ObjectRef],
               pending: Mapping[TypeKey, Resource] | None = None) -> dict[ObjectRef, Resource]:
        """A ``Resource`` for every ref whose kind is served, or else in ``pending`` (kinds
        of CRDs not applied yet). The cache answers first; a miss costs one refresh."""
        refs = list(refs)
        served = self.catalog(kube)
        if any((r.api_version, r.kind) not in served for r in refs):
            served = self.refresh(kube)     # a CRD may have been established since
        catalog = {**(pending or {}), **served}
        return {r: catalog[(r.api_version, r.kind)] for r in refs
                if (r.api_version, r.kind) in catalog}

    def resolve(self, kube: Kube, refs: Iterable[ObjectRef],
                pending: Mapping[TypeKey, Resource] | None = None) -> dict[ObjectRef, Resource]:
        """Like ``lookup``, but an unknown kind is an ``ApplyError`` naming the objects."""
        refs = list(refs)
        found = self.lookup(kube, refs, pending)
        unknown = [r for r in refs if r not in found]
        if unknown:
            raise hints.explain(kube, unknown, self.catalog(kube))
        return found

    def forget(self, kube: Kube) -> None:
        with self._lock:
            self._catalogs.pop(kube.server, None)


def capabilities(kube: Kube, discovery: "Discovery") -> tuple[str, list[str]]:
    """The server's version (``v1.37.2``) and what it serves (``apps/v1`` and
    ``apps/v1/Deployment``): what ``helm template`` is told of the target cluster."""
    version = str(kube.own().get("/version").get("gitVersion") or "")
    served: set[str] = set()
    for resource in discovery.catalog(kube).values():
        served.add(resource.api_version)
        served.add(f"{resource.api_version}/{resource.kind}")
    return version, sorted(served)


PROCESS = Discovery()   # one per worker process: discovery is per server, not per task
