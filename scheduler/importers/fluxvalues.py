"""A Flux HelmRelease's ``valuesFrom`` read from the ConfigMaps of the same repository.

    valuesFrom[i] {kind: ConfigMap, name, valuesKey, targetPath, optional}
      -> a ConfigMap object among the inputs (the release's namespace, or none given:
         the namespace a kustomization sets), or a ``configMapGenerator`` entry of the
         ``kustomization.yaml`` beside the release's file or of a kustomize
         Kustomization among the inputs (its file, read from the kustomization's own
         directory)
      -> its ``valuesKey`` (default ``values.yaml``) parsed as YAML and merged, in
         order, under ``spec.values`` (which wins), as Flux merges them

A Secret is never read: values from Secrets stay out of the spec (a note says
what to do). A reference that is not among the inputs is a note, or nothing
when it is ``optional`` (Flux skips it too). A generator file must stay inside
its kustomization's directory (kustomize's own load restriction) and be small.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

import yaml

from scheduler.importers.common import Manifest
from shared.values import deep_merge

DEFAULT_KEY = "values.yaml"
MAX_FILE_BYTES = 1 << 20
_KUSTOMIZE_API = "kustomize.config.k8s.io"
_KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")

Note = Callable[[str], None]


def values(release: Manifest, objects: list[Manifest], note: Note) -> dict[str, Any]:
    """The values ``release`` gets from its ``valuesFrom`` entries, merged in order."""
    merged: dict[str, Any] = {}
    for i, ref in enumerate(release.spec.get("valuesFrom") or []):
        where = f"valuesFrom[{i}] {ref.get('kind')} {ref.get('name')!r}"
        if ref.get("kind") != "ConfigMap":
            note(f"{where}: values from a {ref.get('kind')} are never copied into the spec; "
                 "put them in helm.values (or a SOPS-encrypted valuesFiles entry)")
            continue
        key = str(ref.get("valuesKey") or DEFAULT_KEY)
        data = _data(release, str(ref.get("name", "")), objects, note)
        if data is None or key not in data:
            if not ref.get("optional"):
                missing = "is not among the inputs" if data is None else f"has no key {key!r}"
                note(f"{where} {missing}: copy its values into helm.values")
            continue
        merged = deep_merge(merged, _one(data[key], ref.get("targetPath"), where, note))
    return merged


def _one(text: Any, target: Any, where: str, note: Note) -> dict[str, Any]:
    if target:
        out: dict[str, Any] = {}
        node = out
        *parents, last = str(target).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = str(text)
        return out
    parsed = yaml.safe_load(str(text)) if text else {}
    if not isinstance(parsed, dict):
        note(f"{where}: its values are not a mapping and were left out")
        return {}
    return parsed


def consumed(config_map: Manifest, objects: Iterable[Manifest]) -> bool:
    """Whether a HelmRelease among ``objects`` takes values from ``config_map``."""
    for obj in objects:
        if obj.kind != "HelmRelease":
            continue
        for ref in obj.spec.get("valuesFrom") or []:
            if ref.get("kind") == "ConfigMap" and ref.get("name") == config_map.name and \
                    config_map.namespace in ("", obj.namespace):
                return True
    return False


def _data(release: Manifest, name: str, objects: list[Manifest],
          note: Note) -> Mapping[str, Any] | None:
    for obj in objects:
        if obj.kind == "ConfigMap" and obj.name == name and \
                obj.namespace in ("", release.namespace):
            data = obj.obj.get("data")
            return data if isinstance(data, dict) else {}
    kustomizations = [o for o in objects if o.kind == "Kustomization" and
                      str(o.obj.get("apiVersion", "")).startswith(_KUSTOMIZE_API)]
    beside = _beside(release)
    for obj in ([beside] if beside else []) + kustomizations:
        for gen in obj.obj.get("configMapGenerator") or []:
            if isinstance(gen, dict) and gen.get("name") == name:
                return _generated(obj, gen, note)
    return None


def _beside(release: Manifest) -> Manifest | None:
    """The ``kustomization.yaml`` in the release's own directory (often without apiVersion
    and kind, so not among the objects read), as a ``Manifest``."""
    directory = os.path.dirname(release.file)
    for name in _KUSTOMIZATIONS:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.path.getsize(path) <= MAX_FILE_BYTES:
            try:
                with open(path, encoding="utf-8") as handle:
                    doc = yaml.safe_load(handle)
            except (UnicodeDecodeError, yaml.YAMLError):
                return None       # named as a file that does not parse, where it is read
            return Manifest(doc, path) if isinstance(doc, dict) else None
    return None


def _generated(kustomization: Manifest, gen: dict[str, Any], note: Note) -> dict[str, Any]:
    """A ``configMapGenerator`` entry's data: its literals and its files (``key=path`` or
    ``path``, relative to the kustomization's directory and inside it)."""
    data: dict[str, Any] = {}
    for literal in gen.get("literals") or []:
        key, _, value = str(literal).partition("=")
        data[key] = value
    root = os.path.realpath(os.path.dirname(kustomization.file))
    for item in gen.get("files") or []:
        key, _, rel = str(item).rpartition("=") if "=" in str(item) else ("", "", str(item))
        path = os.path.realpath(os.path.join(root, rel))
        where = f"{kustomization.file}: configMapGenerator {gen.get('name')!r} file {rel!r}"
        if os.path.commonpath([root, path]) != root:
            note(f"{where} leaves the kustomization's directory and was not read")
        elif not os.path.isfile(path) or os.path.getsize(path) > MAX_FILE_BYTES:
            note(f"{where} is missing or larger than {MAX_FILE_BYTES} bytes and was not read")
        else:
            with open(path, encoding="utf-8") as handle:
                data[key or os.path.basename(rel)] = handle.read()
    return data
