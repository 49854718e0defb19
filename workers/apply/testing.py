"""Small objects and an application, for tests and benchmarks of the apply engine.

Like ``celery.contrib.testing`` or ``kopf.testing``: code that tests and the
bench share, kept next to what it exercises. Every builder returns a plain dict
as the render stage would (apiVersion, kind, metadata.name/namespace, no
status), small enough for control planes that run no controllers.
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.spec.model import Application, Selector


def unique(prefix: str) -> str:
    """A name no other test in the session uses (namespaces never finish deleting)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def application(name: str, **flags: Any) -> Application:
    """An Application for ``name`` with spec defaults, overridden by ``flags``."""
    fields: dict[str, Any] = {"source": "test", "path": ".",
                              "clusters": Selector(names=("dev-1",)), **flags}
    return Application(name=name, **fields)


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def configmap(name: str, ns: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}, "data": dict(data)}


def service_account(name: str, ns: str) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns}}


def deployment(name: str, ns: str, replicas: int = 0, image: str = "nginx:1.27") -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "serviceAccountName": name,
                         "containers": [{"name": "web", "image": image,
                                         "ports": [{"containerPort": 80}],
                                         "resources": {"limits": {"cpu": "0.5",
                                                                  "memory": "64Mi"}}}]}}}}


def service(name: str, ns: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 80}]}}


def ingress(name: str, ns: str, host: str = "web.example.com") -> dict:
    backend = {"service": {"name": name, "port": {"number": 80}}}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"rules": [{"host": host, "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": backend}]}}]}}


def web_app(name: str, ns: str, replicas: int = 0) -> list[dict]:
    """The four-object app of the bench: Deployment, ServiceAccount, Service, Ingress."""
    return [deployment(name, ns, replicas), service_account(name, ns), service(name, ns),
            ingress(name, ns)]


def crd(group: str, kind: str, plural: str, scope: str = "Namespaced") -> dict:
    """A CustomResourceDefinition with one served version ``v1`` and an open schema."""
    schema = {"type": "object", "properties": {"spec": {
        "type": "object", "properties": {"size": {"type": "integer", "minimum": 1},
                                         "color": {"type": "string"}}}}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                               "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": schema}}]}}
