"""ApplicationSets expanded into Applications that ``argocd.application`` reads.

    list generator      -> one Application per element (parameters substituted)
    git directories     -> one Application per matching directory, when repoURL is a
                           local path that can be listed (else: skipped, named)
    clusters generator  -> one Application whose clusters are a label selector;
                           ``{{name}}`` becomes ``${cluster_name}``

Other generators (matrix, merge, scmProvider, pullRequest, plugin...) cannot be
expanded without a controller: the ApplicationSet is named in the summary.
Both template syntaxes are read: ``{{name}}`` and, with goTemplate, ``{{.name}}``.
"""

from __future__ import annotations

import fnmatch
import os
import re
from typing import Any, Callable

from scheduler.importers.common import Import, Manifest

_PARAM = re.compile(r"\{\{-?\s*\.?([A-Za-z0-9_.\[\]-]+)\s*-?\}\}")
_CLUSTER_PARAMS = {"name": "${cluster_name}", "nameNormalized": "${cluster_name}"}


def expand(obj: Manifest, result: Import) -> list[Manifest]:
    """The Applications ``obj`` stands for; what cannot be expanded is ``skipped``."""
    template = obj.spec.get("template") or {}
    out: list[Manifest] = []
    for i, generator in enumerate(obj.spec.get("generators") or []):
        kind = next(iter(generator), "")
        where = f"{obj.where()}: generators[{i}].{kind}"
        if kind == "list":
            params = [p for p in generator["list"].get("elements") or [] if isinstance(p, dict)]
            out += _render_all(obj, template, [_flatten(p) for p in params], result, where)
        elif kind == "git":
            params = _git_directories(obj, generator["git"], result, where)
            out += _render_all(obj, template, params, result, where)
        elif kind == "clusters":
            out += _clusters(obj, template, generator["clusters"] or {}, result, where)
        else:
            result.skipped.append(f"{where}: this generator cannot be expanded without Argo CD")
    return out


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def _substitute(value: Any, lookup: Callable[[str], str | None], missing: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, lookup, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, lookup, missing) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        found = lookup(match.group(1))
        if found is None:
            missing.add(match.group(1))
            return match.group(0)
        return found
    return _PARAM.sub(one, value)


def _render_all(obj: Manifest, template: dict[str, Any], params: list[dict[str, str]],
                result: Import, where: str) -> list[Manifest]:
    out = []
    for p in params:
        missing: set[str] = set()
        rendered = _substitute(template, p.get, missing)
        if missing:
            result.skipped.append(f"{where}: element {p}: parameters {sorted(missing)} are "
                                  "not given")
            continue
        out.append(_as_application(obj, rendered))
    return out


def _as_application(obj: Manifest, template: dict[str, Any]) -> Manifest:
    return Manifest({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
                     "metadata": template.get("metadata") or {"name": obj.name},
                     "spec": template.get("spec") or {}}, obj.file)


def _git_directories(obj: Manifest, git: dict[str, Any], result: Import,
                     where: str) -> list[dict[str, str]]:
    repo = str(git.get("repoURL", "")).removeprefix("file://")
    if git.get("files") or not os.path.isdir(repo):
        why = "files generators are not expanded" if git.get("files") else \
            f"repoURL {git.get('repoURL')!r} is not a local directory that can be listed"
        result.skipped.append(f"{where}: {why}")
        return []
    dirs = sorted(os.path.relpath(os.path.join(root, d), repo)
                  for root, names, _ in os.walk(repo) for d in names if d != ".git")
    chosen: list[str] = []
    for rule in git.get("directories") or []:
        matching = [d for d in dirs if fnmatch.fnmatchcase(d, str(rule.get("path", "")))]
        chosen = [d for d in chosen if d not in matching] if rule.get("exclude") else \
            chosen + [d for d in matching if d not in chosen]
    return [_path_params(d) for d in chosen]


def _path_params(path: str) -> dict[str, str]:
    base = os.path.basename(path)
    params = {"path": path, "path.path": path, "path.basename": base,
              "path.basenameNormalized": re.sub(r"[^a-z0-9-]", "-", base.lower())}
    params.update({f"path[{i}]": part for i, part in enumerate(path.split("/"))})
    params.update({f"path.segments[{i}]": part for i, part in enumerate(path.split("/"))})
    return params


def _clusters(obj: Manifest, template: dict[str, Any], generator: dict[str, Any],
              result: Import, where: str) -> list[Manifest]:
    selector = generator.get("selector") or {}
    if selector.get("matchExpressions"):
        result.skipped.append(f"{where}: selector.matchExpressions have no counterpart")
        return []
    spec = dict(template.get("spec") or {})
    spec["destination"] = {k: v for k, v in (spec.get("destination") or {}).items()
                           if k not in ("server", "name")}   # the selected clusters
    missing: set[str] = set()
    rendered = _substitute({**template, "spec": spec}, _CLUSTER_PARAMS.get, missing)
    if missing:
        result.skipped.append(f"{where}: parameters {sorted(missing)} have no counterpart "
                              "(only {{name}}, as ${cluster_name})")
        return []
    rendered.setdefault("metadata", {})["name"] = obj.name
    app = _as_application(obj, rendered)
    labels = {k: str(v) for k, v in (selector.get("matchLabels") or {}).items()}
    app.obj["x-clusters"] = {"matchLabels": labels}
    return [app]
