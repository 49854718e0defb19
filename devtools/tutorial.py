"""The GitOps tutorial's repository layout, written into a directory.

The demo and the tests need a realistic repository: shared apps and
infrastructure as kustomize bases, one overlay per cluster that labels
everything with its environment and patches replica counts (JSON6902), and a
``${cluster_name}`` reference that fleetsync substitutes after the build.
This module only writes files; committing them is the caller's business, so
that tests can use a plain directory and the demo a real Git repository.

Layout::

    apps/web-app/                 Deployment (nginx, tag set by images:), Service
    apps/api-service/             Deployment, Service
    infrastructure/ingress/       Namespace ingress-system, ConfigMap
    infrastructure/monitoring/    Namespace monitoring, ConfigMap (cluster: ${cluster_name})
    clusters/<cluster>/           namespace.yaml (web) + kustomization: resources,
                                  labels env=<cluster>, replica patches
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CLUSTERS = {"production": 3, "staging": 2, "development": 1}   # cluster -> replicas
APPS = ("web-app", "api-service")
APP_NAMESPACE = "web"
KUSTOMIZATION = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (inline patches) as readable ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(path: Path, *docs: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False), encoding="utf-8")


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def deployment(name: str, image: str, port: int) -> dict[str, Any]:
    labels = {"app": name}
    container = {"name": name, "image": image, "ports": [{"containerPort": port}],
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


def service(name: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": port}]}}


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def config_map(name: str, ns: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
            "data": data}


def _write_app(root: Path, name: str, image: str, port: int, tag: str) -> None:
    base = root / "apps" / name
    _dump(base / "deployment.yaml", deployment(name, image, port))
    _dump(base / "service.yaml", service(name, port))
    _dump(base / "kustomization.yaml", {**KUSTOMIZATION, "namespace": APP_NAMESPACE,
                                         "resources": ["deployment.yaml", "service.yaml"],
                                         "images": [{"name": image, "newTag": tag}]})


def _write_infrastructure(root: Path) -> None:
    ingress = root / "infrastructure" / "ingress"
    _dump(ingress / "resources.yaml", namespace("ingress-system"),
          config_map("ingress-config", "ingress-system", {"default-backend": "web-app.web.svc"}))
    _dump(ingress / "kustomization.yaml", {**KUSTOMIZATION, "resources": ["resources.yaml"]})
    monitoring = root / "infrastructure" / "monitoring"
    _dump(monitoring / "resources.yaml", namespace("monitoring"),
          config_map("monitoring-config", "monitoring",
                     {"cluster": "${cluster_name}", "scrape_interval": "${scrape_interval:=30s}"}))
    _dump(monitoring / "kustomization.yaml", {**KUSTOMIZATION, "resources": ["resources.yaml"]})


def replicas_patch(app: str, replicas: int) -> dict[str, Any]:
    """A JSON6902 patch (the modern ``patches:`` form) setting ``app``'s replicas."""
    ops = [{"op": "replace", "path": "/spec/replicas", "value": replicas}]
    return {"target": {"group": "apps", "version": "v1", "kind": "Deployment", "name": app},
            "patch": yaml.safe_dump(ops, sort_keys=False)}


def _write_cluster(root: Path, cluster: str, replicas: int) -> None:
    overlay = root / "clusters" / cluster
    _dump(overlay / "namespace.yaml", namespace(APP_NAMESPACE))
    _dump(overlay / "kustomization.yaml", {
        **KUSTOMIZATION,
        "resources": ["namespace.yaml", "../../apps/web-app", "../../apps/api-service",
                      "../../infrastructure/ingress", "../../infrastructure/monitoring"],
        # includeTemplates labels the pods too; selectors stay as the bases wrote
        # them, because a Deployment's selector is immutable.
        "labels": [{"pairs": {"env": cluster, "app.kubernetes.io/part-of": "tutorial"},
                    "includeTemplates": True}],
        "patches": [replicas_patch(app, replicas) for app in APPS],
    })


def write_tutorial(root: Path, web_image_tag: str = "1.25.3") -> None:
    """Write the whole tutorial repository layout under ``root`` (no git)."""
    _write_app(root, "web-app", "nginx", 80, web_image_tag)
    _write_app(root, "api-service", "ghcr.io/example/api", 8080, "1.0.0")
    _write_infrastructure(root)
    for cluster, replicas in CLUSTERS.items():
        _write_cluster(root, cluster, replicas)


def set_web_image_tag(root: Path, tag: str) -> None:
    """Change the nginx tag that every cluster's web-app runs."""
    path = root / "apps" / "web-app" / "kustomization.yaml"
    doc = _load(path)
    doc["images"] = [{**image, "newTag": tag} if image.get("name") == "nginx" else image
                     for image in doc.get("images", [])]
    _dump(path, doc)


def remove_app(root: Path, cluster: str, app: str) -> None:
    """Drop ``app`` (``web-app``, or a path such as ``infrastructure/ingress``) from a cluster.

    Raises ``KeyError`` if the cluster does not list it.
    """
    path = root / "clusters" / cluster / "kustomization.yaml"
    doc = _load(path)
    resources = doc.get("resources", [])
    kept = [r for r in resources if not (r.endswith("/" + app) or r == app)]
    if len(kept) == len(resources):
        raise KeyError(f"{app!r} is not a resource of clusters/{cluster}")
    doc["resources"] = kept
    _dump(path, doc)
