"""Which imported Flux objects a Flux Kustomization's path would apply.

Flux applies whatever its path renders, Flux objects included: the flux-system
Kustomization applies the cluster's Kustomizations, a tenants Kustomization the
tenants' GitRepositories and Kustomizations. Imported, those objects become
fleetsync's own sources and applications, and the path still holds them:
fleetsync would apply them as plain objects. The importer says so, found by
file alone (nothing is rendered here): the work tree is the nearest directory
above the Kustomization's file that holds ``.git``; from ``<work tree>/<path>``
the ``resources`` of ``kustomization.yaml`` files are followed (directories and
files, inside the work tree); a directory without one stands for its whole
subtree, as Flux reads it.
"""

from __future__ import annotations

import os

import yaml

from scheduler.importers.common import Manifest

FLUX_KINDS = ("GitRepository", "HelmRepository", "OCIRepository", "Kustomization", "HelmRelease")
_KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_MAX_DIRECTORIES = 500
_MAX_FILE_BYTES = 1 << 20


def is_flux(obj: Manifest) -> bool:
    """A Flux Kustomization, not a kustomize ``kustomization.yaml`` (kustomize.config.k8s.io)."""
    return str(obj.obj.get("apiVersion", "")).startswith(("kustomize.toolkit.fluxcd.io",
                                                           "helm.toolkit.fluxcd.io"))


def flux_objects_under(obj: Manifest, path: str, objects: list[Manifest]) -> list[Manifest]:
    """The Flux objects among ``objects`` that ``path`` of the work tree holding ``obj``'s
    file renders (none when that file is in no work tree, e.g. an export)."""
    tree = _work_tree(os.path.dirname(os.path.realpath(obj.file)))
    if tree is None:
        return []
    start = os.path.realpath(os.path.join(tree, path))
    if not _inside(tree, start) or not os.path.isdir(start):
        return []
    subtrees, files = _reached(tree, start)
    return [o for o in objects if o.kind in FLUX_KINDS and (o.kind != "Kustomization" or is_flux(o))
            and (os.path.realpath(o.file) in files or
                 any(_inside(d, os.path.realpath(o.file)) for d in subtrees))]


def _work_tree(here: str) -> str | None:
    while not os.path.isdir(os.path.join(here, ".git")):
        if os.path.dirname(here) == here:
            return None
        here = os.path.dirname(here)
    return here


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _reached(tree: str, start: str) -> tuple[set[str], set[str]]:
    """Directories read whole (no kustomization) and files named by kustomizations."""
    subtrees: set[str] = set()
    files: set[str] = set()
    queue, seen = [start], {start}
    while queue and len(seen) < _MAX_DIRECTORIES:
        directory = queue.pop()
        found = next((os.path.join(directory, n) for n in _KUSTOMIZATIONS
                      if os.path.isfile(os.path.join(directory, n))), None)
        if found is None:
            subtrees.add(directory)
            continue
        for entry in _resources(found):
            target = os.path.realpath(os.path.join(directory, entry))
            if not _inside(tree, target):
                continue
            if os.path.isdir(target) and target not in seen:
                seen.add(target)
                queue.append(target)
            elif os.path.isfile(target):
                files.add(target)
    return subtrees, files


def _resources(path: str) -> list[str]:
    try:
        if os.path.getsize(path) > _MAX_FILE_BYTES:
            return []
        with open(path, encoding="utf-8") as handle:
            doc = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    found = doc.get("resources") if isinstance(doc, dict) else None
    return [r for r in found if isinstance(r, str) and "://" not in r] \
        if isinstance(found, list) else []
