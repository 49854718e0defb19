"""What both importers share: reading manifests, the spec being built, and its text.

    files (dirs walked, multi-document, ``kind: List``) -> objects with their place
    -> argocd.build | flux.build fill an ``Import`` (sources, clusters, applications,
       each with the notes of what had no counterpart; skipped inputs by name)
    -> ``render`` dumps it with PyYAML, each entry's notes as comment lines above it

Nothing is dropped silently: a field without a counterpart becomes a note on the
entry it belongs to (a comment in the output and a line of the summary), an
object or file that could not be imported becomes a ``skipped`` line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import yaml

KUBECONFIG_PLACEHOLDER = "/etc/fleetsync/kubeconfigs/{name}.yaml"
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object of the input and where it was read."""

    obj: dict[str, Any]
    file: str

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.obj.get("metadata") or {}).get("namespace") or "")

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.obj.get("spec")
        return spec if isinstance(spec, dict) else {}

    def where(self) -> str:
        return f"{self.file}: {self.kind} {self.name}"


@dataclass
class Entry:
    """A source, cluster or application of the output with the notes written above it."""

    data: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass
class Import:
    """The fleet spec being built; ``skipped``: inputs that were not imported at all."""

    sources: dict[str, Entry] = field(default_factory=dict)
    clusters: dict[str, Entry] = field(default_factory=dict)
    applications: dict[str, Entry] = field(default_factory=dict)
    windows: dict[str, Entry] = field(default_factory=dict)
    images: dict[str, Entry] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def note(self, entry: Entry, where: str, text: str) -> None:
        entry.notes.append(f"{where}: {text}")

    def cluster(self, name: str, origin: str) -> str:
        """The cluster named ``name`` (made with a kubeconfig placeholder on first use)."""
        name = dns_name(name)
        if name not in self.clusters:
            entry = Entry({"name": name, "kubeconfig": KUBECONFIG_PLACEHOLDER.format(name=name)})
            entry.notes.append(f"placeholder: fill kubeconfig (and context) for {origin}")
            self.clusters[name] = entry
        return name

    def summary(self) -> list[str]:
        lines = [f"skipped: {s}" for s in self.skipped]
        for kind, entries in (("source", self.sources), ("cluster", self.clusters),
                              ("application", self.applications), ("image policy", self.images)):
            for name, entry in entries.items():
                lines += [f"{kind} {name}: {n}" for n in entry.notes]
        return lines


def guarded(obj: Manifest, result: Import, convert: Callable[[], None]) -> None:
    """Run one object's conversion; a shape it does not expect (a string where a
    mapping belongs) skips that object, named, instead of ending the import; the
    sources and clusters it had added are taken out again."""
    before = [set(d) for d in (result.sources, result.clusters, result.applications)]
    try:
        convert()
    except (AttributeError, TypeError, KeyError, ValueError, yaml.YAMLError) as err:
        for entries, kept in zip((result.sources, result.clusters, result.applications), before):
            for name in set(entries) - kept:
                del entries[name]
        result.skipped.append(f"{obj.where()}: malformed ({type(err).__name__}: {err})")


def dns_name(text: str) -> str:
    """``text`` as a DNS label (lowercase, '-' for anything else, at most 63)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or "unnamed"


def unique(name: str, taken: Iterable[str], alternative: str) -> str:
    """``name``, or ``alternative`` (then ``name-2``...) when ``name`` is taken."""
    taken = set(taken)
    if name not in taken:
        return name
    if alternative not in taken:
        return alternative
    n = 2
    while f"{name}-{n}" in taken:
        n += 1
    return f"{name}-{n}"


def clean_path(path: str) -> str:
    """A repository path as the spec writes it: relative, no leading ``./``."""
    path = path.strip()
    while path.startswith("./"):
        path = path[2:]
    return path.strip("/") or "."


def read_manifests(paths: Iterable[str], result: Import) -> list[Manifest]:
    """Every object of the YAML files under ``paths``; files that do not parse, and
    documents that are not Kubernetes objects, are named in ``result.skipped``."""
    found: list[Manifest] = []
    for path in paths:
        for file in _files(path, result):
            found += _objects(file, result)
    return found


def _files(path: str, result: Import) -> list[str]:
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        result.skipped.append(f"{path}: no such file or directory")
        return []
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(root, f) for f in sorted(files) if f.endswith(_SUFFIXES)]
    return out


def _objects(file: str, result: Import) -> list[Manifest]:
    try:
        with open(file, encoding="utf-8") as handle:
            docs = list(yaml.safe_load_all(handle))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        result.skipped.append(f"{file}: does not parse as YAML ({str(err).splitlines()[0]})")
        return []
    out: list[Manifest] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
        for item in items or []:
            if isinstance(item, dict) and item.get("kind") and item.get("apiVersion"):
                out.append(Manifest(item, file))
            else:
                result.skipped.append(f"{file}: document {i + 1} is not a Kubernetes object")
    return out


def render(result: Import, origin: str) -> str:
    """The fleet spec as YAML text, each entry's notes as comments above it."""
    lines = [f"# Imported from {origin} manifests by `fleetsync import`.",
             "# Lines starting with '# ' name what had no counterpart; check them."]
    for key, entries in (("sources", result.sources), ("clusters", result.clusters),
                         ("applications", result.applications), ("windows", result.windows),
                         ("images", result.images)):
        if not entries:
            continue
        lines.append(f"{key}:")
        for entry in entries.values():
            lines += [f"  # {_one_line(n)}" for n in entry.notes]
            data = {k: v for k, v in entry.data.items() if not k.startswith("_")}
            text = yaml.safe_dump([data], sort_keys=False, default_flow_style=False,
                                  width=100)
            lines += ["  " + line if line else line for line in text.rstrip("\n").split("\n")]
    if result.skipped:
        lines.append("# Not imported:")
        lines += [f"#   {_one_line(s)}" for s in result.skipped]
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())
