"""Raw reads and writes against the benchmark's kube-apiservers, apart from fleetsync.

The fleet benchmark proves what fleetsync did from the apiserver's side rather
than from fleetsync's own counters: ``apiserver_request_total`` from ``/metrics``
before and after a pass, and the resourceVersion of every object in the bench
namespace and of every inventory ConfigMap before and after. It also measures
the apiserver's own limit on the same machine: the same objects server-side
applied once by one process with a thread pool, and one LIST per kind.

Plain ``requests`` with the kubeconfig that devtools writes (JSON: server, CA
file, bearer token); nothing of fleetsync's client code is used.
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Sequence

import requests
from requests.adapters import HTTPAdapter

NAMESPACE = "bench"
SYSTEM_NAMESPACE = "fleetsync-system"
APP_LABEL = "fleetsync.io/application"
LIMIT_MANAGER = "bench-limit"

# kind -> (API prefix, plural) for every kind the benchmark applies or reads.
KINDS: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "ConfigMap": ("/api/v1", "configmaps"),
}
APP_KINDS = ("ServiceAccount", "Deployment", "Service", "Ingress")
_METRIC = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="([^"]*)"')

Key = tuple[str, str, str]                      # (kind, namespace, name)


class Api:
    """One apiserver, as the admin user of a devtools kubeconfig."""

    def __init__(self, kubeconfig: str | Path, pool: int = 8) -> None:
        config = json.loads(Path(kubeconfig).read_text())
        cluster = config["clusters"][0]["cluster"]
        self.server: str = cluster["server"]
        self.ca: str = cluster["certificate-authority"]
        self.token: str = config["users"][0]["user"]["token"]
        self.pool, self._local = pool, threading.local()
        self.own_requests = 0                  # this benchmark's requests, to subtract

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False           # REQUESTS_CA_BUNDLE would replace our CA
            session.verify = self.ca
            session.headers["Authorization"] = f"Bearer {self.token}"
            session.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=self.pool))
            self._local.session = session
        return session

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self.own_requests += 1
        resp = self._session().request(method, self.server + path, timeout=60, **kwargs)
        if resp.status_code >= 400 and not (method == "POST" and resp.status_code == 409):
            raise RuntimeError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:300]}")
        return resp

    def ensure_namespace(self, name: str) -> None:
        self.request("POST", "/api/v1/namespaces",
                     json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def apply(self, obj: dict, manager: str = LIMIT_MANAGER, dry_run: bool = False) -> None:
        """Server-side apply of ``obj`` (force: this manager owns every field it sets)."""
        params = {"fieldManager": manager, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        self.request("PATCH", object_path(obj), data=json.dumps(obj).encode(),
                     params=params, headers={"Content-Type": "application/apply-patch+yaml"})

    def dry_run(self, obj: dict) -> None:
        self.apply(obj, dry_run=True)

    def create_inventory(self, app: str) -> None:
        """A ConfigMap the size of a 4-object inventory (what a sync unit records)."""
        refs = [f"apps/v1/Deployment/{NAMESPACE}/{app}", f"v1/Service/{NAMESPACE}/{app}",
                f"v1/ServiceAccount/{NAMESPACE}/{app}",
                f"networking.k8s.io/v1/Ingress/{NAMESPACE}/{app}"]
        self.request("POST", f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/configmaps", json={
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"fleetsync-{app}", "namespace": SYSTEM_NAMESPACE,
                         "labels": {"fleetsync.io/inventory": app}},
            "data": {"revision": "0" * 40, "token": "1", "objects": json.dumps(refs),
                     "adopted": "[]", "applied_at": "2026-01-01T00:00:00Z"}})

    def items(self, kind: str, namespace: str, selector: str | None = None) -> list[dict]:
        prefix, plural = KINDS[kind]
        params = {"labelSelector": selector} if selector else {}
        body = self.request("GET", f"{prefix}/namespaces/{namespace}/{plural}", params=params).json()
        return body.get("items") or []

    def request_counts(self) -> dict[tuple[str, str], float]:
        """``apiserver_request_total`` summed by (verb, resource) over every other label."""
        text = self.request("GET", "/metrics").text
        counts: dict[tuple[str, str], float] = {}
        for line in text.splitlines():
            match = _METRIC.match(line)
            if match:
                labels = dict(_LABEL.findall(match["labels"]))
                key = (labels.get("verb", ""), labels.get("resource", "") or labels.get("path", ""))
                counts[key] = counts.get(key, 0.0) + float(match["value"])
        return counts


def object_path(obj: dict) -> str:
    prefix, plural = KINDS[obj["kind"]]
    meta = obj["metadata"]
    return f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


def apply_all(api: Api, objects: list[dict], threads: int, inventories: Sequence[str] = ()
              ) -> float:
    """Seconds to server-side apply every object once, ``threads`` at a time. With
    ``inventories`` (app names), validate-all-first at its cheapest: every object dry-run,
    then applied, then one inventory ConfigMap created per app, and nothing else."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        if inventories:
            list(pool.map(api.dry_run, objects))
        list(pool.map(api.apply, objects))
        list(pool.map(api.create_inventory, inventories))
    return time.monotonic() - started


def list_owned(apis: Iterable[Api]) -> tuple[float, int]:
    """(seconds, objects) for one label-selected LIST per kind of fleetsync's objects on
    each apiserver: what a bulk read of a no-op pass needs."""
    started, count = time.monotonic(), 0
    for api in apis:
        for kind in APP_KINDS:
            count += len(api.items(kind, NAMESPACE, APP_LABEL))
    return time.monotonic() - started, count


Snapshot = dict[Key, tuple[str, dict[str, str]]]    # key -> (resourceVersion, manager -> time)


def snapshot(apis: Iterable[Api]) -> Snapshot:
    """resourceVersion (and each field manager's last write time) of every object of the
    bench namespace and every ConfigMap of fleetsync-system, on every apiserver."""
    out: Snapshot = {}
    for index, api in enumerate(apis):
        places = [(kind, NAMESPACE) for kind in KINDS] + [("ConfigMap", SYSTEM_NAMESPACE)]
        for kind, namespace in places:
            for item in api.items(kind, namespace):
                meta = item["metadata"]
                managers = {m.get("manager", ""): m.get("time", "")
                            for m in meta.get("managedFields") or []}
                out[(kind, f"{index}/{namespace}", meta["name"])] = (meta["resourceVersion"],
                                                                     managers)
    return out


def changes(before: Snapshot, after: Snapshot) -> tuple[list[Key], set[str]]:
    """Objects created, deleted or written between two snapshots, and the field managers
    whose entries moved in the written ones."""
    changed = sorted(k for k in before.keys() | after.keys()
                     if (before.get(k) or ("",))[0] != (after.get(k) or ("",))[0])
    managers: set[str] = set()
    for key in changed:
        old, new = (before.get(key) or ("", {}))[1], (after.get(key) or ("", {}))[1]
        managers |= {m for m, t in new.items() if old.get(m) != t}
    return changed, managers


def count_delta(before: dict[tuple[str, str], float],
                after: dict[tuple[str, str], float]) -> dict[tuple[str, str], int]:
    keys = before.keys() | after.keys()
    delta = {k: int(after.get(k, 0) - before.get(k, 0)) for k in keys}
    return {k: v for k, v in delta.items() if v}


def by_verb(before: list[dict[tuple[str, str], float]],
            after: list[dict[tuple[str, str], float]]) -> dict[str, int]:
    """Requests between two ``request_counts`` of each apiserver, by "VERB resource",
    most first (each apiserver's count includes the one /metrics read of ``after``)."""
    out: dict[str, int] = {}
    for a, b in zip(before, after):
        for (verb, resource), n in count_delta(a, b).items():
            key = f"{verb} {resource}".strip()
            out[key] = out.get(key, 0) + n
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))
