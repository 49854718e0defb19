"""Argo CD objects read into a fleet spec: Application, AppProject, cluster Secrets;
ApplicationSets are expanded by ``appset`` and come back here as Applications.

    cluster Secrets -> clusters (labels kept, for the clusters generator)
    AppProject      -> allowedNamespaces / allowedKinds / deniedKinds of its applications
    Application     -> a source per (repoURL, revision or chart) and an application
                       whose destination names its cluster

``targetRevision: HEAD`` (or none) is the remote's default branch: ``defaultBranch:
true``. Argo CD syncs by hand unless ``syncPolicy.automated`` is set; fleetsync always
syncs, so a manual Application becomes ``drift: detect`` (report, write nothing)
and says so. Argo CD's ``valueFiles`` are relative to the application path,
fleetsync's ``valuesFiles`` to the source root: the path is joined in.
"""

from __future__ import annotations

import base64
import posixpath
import re
from functools import partial
from typing import Any
from urllib.parse import urlparse

import yaml

from scheduler.importers import appset, syncwindows
from scheduler.importers.common import Entry, Import, Manifest, clean_path, dns_name, guarded
from scheduler.importers.common import unique

IN_CLUSTER = "https://kubernetes.default.svc"
_CLUSTER_LABEL = "argocd.argoproj.io/secret-type"
_SEMVER_RANGE = re.compile(r"[*^~<>=x]|\|\|")
_TAG = re.compile(r"v?\d+\.\d+(\.\d+)?([-+][0-9A-Za-z.-]+)?")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SOURCE_KEYS = {"repoURL", "path", "targetRevision", "chart", "helm", "kustomize", "directory"}
_HELM_KEYS = {"releaseName", "values", "valuesObject", "valueFiles", "parameters"}
_IGNORE_KEYS = {"group", "kind", "name", "jsonPointers"}
_SPEC_KEYS = {"source", "sources", "destination", "project", "syncPolicy", "ignoreDifferences"}
_PROJECT_KEYS = {"syncWindows",        # scheduler/importers/syncwindows.py
                 "destinations", "namespaceResourceWhitelist", "clusterResourceWhitelist",
                 "namespaceResourceBlacklist", "clusterResourceBlacklist", "description"}
_FINALIZER = "resources-finalizer.argocd.argoproj.io"   # deleting the app deletes its objects
_ALWAYS = {"ServerSideApply=true": "fleetsync always applies server-side",
           "ApplyOutOfSyncOnly=true": "fleetsync writes only the objects that differ"}


def build(objects: list[Manifest], result: Import) -> None:
    for obj in objects:
        if obj.kind == "Secret" and _labels(obj).get(_CLUSTER_LABEL) == "cluster":
            guarded(obj, result, partial(_cluster_secret, obj, result))
    projects = {o.name: o for o in objects if o.kind == "AppProject"}
    for obj in objects:
        if obj.kind == "Application":
            guarded(obj, result, partial(application, obj, result, projects))
        elif obj.kind == "ApplicationSet":
            guarded(obj, result, partial(_application_set, obj, result, projects))
        elif obj.kind not in ("AppProject", "Secret"):
            result.skipped.append(f"{obj.where()}: not an Argo CD Application, ApplicationSet "
                                  "or AppProject")
    syncwindows.build(projects, result)


def _application_set(obj: Manifest, result: Import, projects: dict[str, Manifest]) -> None:
    for app in appset.expand(obj, result):
        guarded(app, result, partial(application, app, result, projects,
                                     app.obj.get("x-clusters")))


def _labels(obj: Manifest) -> dict[str, str]:
    return dict((obj.obj.get("metadata") or {}).get("labels") or {})


def _cluster_secret(obj: Manifest, result: Import) -> None:
    data = {k: base64.b64decode(v).decode() for k, v in (obj.obj.get("data") or {}).items()}
    data.update(obj.obj.get("stringData") or {})
    name = cluster_name(data.get("name"), data.get("server"))
    result.cluster(name, f"the Argo CD cluster {data.get('server') or name}")
    labels = {k: str(v) for k, v in _labels(obj).items() if k != _CLUSTER_LABEL}
    if labels:
        result.clusters[name].data["labels"] = labels


def cluster_name(name: Any, server: Any) -> str:
    """Argo CD's destination name, else a name made from the server URL."""
    if name:
        return dns_name(str(name))
    if not server or str(server).rstrip("/") == IN_CLUSTER:
        return "in-cluster"
    return dns_name(urlparse(str(server)).hostname or str(server))


def application(obj: Manifest, result: Import, projects: dict[str, Manifest],
                clusters: dict[str, Any] | None = None) -> None:
    spec = obj.spec
    source = spec.get("source")
    if not source and len(spec.get("sources") or []) == 1:
        source = spec["sources"][0]
    if not isinstance(source, dict) or not source.get("repoURL"):
        why = "several sources (spec.sources)" if spec.get("sources") else "no spec.source"
        result.skipped.append(f"{obj.where()}: {why} is not supported")
        return
    if source.get("plugin"):
        result.skipped.append(f"{obj.where()}: a config management plugin source has no "
                              "counterpart")
        return
    name = unique(dns_name(obj.name), result.applications, dns_name(f"{obj.name}-app"))
    entry = Entry({"name": name, "source": _source(obj, source, result), "_argo_name": obj.name,
                   "_project": spec.get("project") or "default"})
    where = obj.where()
    if source.get("chart"):
        entry.data["chart"] = {"name": source["chart"],
                               "version": str(source.get("targetRevision") or "*")}
    else:
        entry.data["path"] = clean_path(str(source.get("path") or "."))
    entry.data.update(_destination(obj, entry, result, clusters))
    _helm(source.get("helm") or {}, entry, result, where)
    _kustomize(source.get("kustomize") or {}, entry, result, where)
    _directory(source.get("directory") or {}, entry, result, where)
    _sync_policy(spec.get("syncPolicy") or {}, entry, result, where)
    _ignore(spec.get("ignoreDifferences") or [], entry, result, where)
    _project(spec.get("project") or "default", projects, entry, result, where)
    for key in sorted(set(source) - _SOURCE_KEYS - {"plugin"}):
        result.note(entry, where, f"spec.source.{key} has no counterpart")
    for key in sorted(set(spec) - _SPEC_KEYS):
        result.note(entry, where, f"spec.{key} has no counterpart")
    finalizers = (obj.obj.get("metadata") or {}).get("finalizers") or []
    if any(str(f).split("/")[0] == _FINALIZER for f in finalizers):
        entry.data["onRemoval"] = "prune"
    result.applications[name] = entry


def _source(obj: Manifest, source: dict[str, Any], result: Import) -> str:
    url, revision = str(source["repoURL"]), str(source.get("targetRevision") or "HEAD")
    helm = bool(source.get("chart"))
    key = ("helm", url) if helm else ("git", url, revision)
    for name, entry in result.sources.items():
        if entry.data.get("_key") == key:
            return name
    base = dns_name(url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    name = unique(base, result.sources, dns_name(f"{base}-{revision}"))
    entry = Entry({"name": name, "_key": key})
    if helm:
        entry.data["helmRepository"] = url if "://" in url else f"oci://{url}"
        if "://" not in url:
            result.note(entry, obj.where(), "repoURL without a scheme read as an OCI registry")
    else:
        entry.data["url"] = url
        kind, ref = _revision(revision)
        entry.data[kind] = ref
    result.sources[name] = entry
    return name


def _revision(revision: str) -> tuple[str, str | bool]:
    if revision == "HEAD":          # also an empty targetRevision: the remote's default branch
        return "defaultBranch", True
    if _COMMIT.fullmatch(revision):
        return "commit", revision
    if _TAG.fullmatch(revision):
        return "tag", revision
    if _SEMVER_RANGE.search(revision):
        return "semver", revision
    return "branch", revision


def _destination(obj: Manifest, entry: Entry, result: Import,
                 clusters: dict[str, Any] | None) -> dict[str, Any]:
    dest = obj.spec.get("destination") or {}
    out: dict[str, Any] = {}
    if clusters is not None:            # from a clusters generator: a selector, not a name
        out["clusters"] = clusters
    else:
        name = cluster_name(dest.get("name"), dest.get("server"))
        result.cluster(name, f"the Argo CD destination {dest.get('server') or name}")
        out["clusters"] = {"names": [name]}
    if dest.get("namespace"):
        out["namespace"] = dest["namespace"]
    return out


def _helm(helm: dict[str, Any], entry: Entry, result: Import, where: str) -> None:
    out: dict[str, Any] = {}
    if helm.get("releaseName"):
        out["releaseName"] = helm["releaseName"]
    values = dict(helm.get("valuesObject") or {})
    if isinstance(helm.get("values"), str) and helm["values"].strip():
        parsed = yaml.safe_load(helm["values"])
        values = {**(parsed if isinstance(parsed, dict) else {}), **values}
    for param in helm.get("parameters") or []:
        value = param.get("value")
        value = "" if value is None else str(value) if param.get("forceString") else _typed(value)
        if not _set(values, str(param.get("name", "")), value):
            result.note(entry, where, f"helm parameter {param.get('name')!r} (list index or "
                        "escaped dot) was not converted: write it into helm.values")
    if helm.get("parameters"):
        result.note(entry, where, "helm.parameters were merged into helm.values (typed as "
                    "helm --set types them; forceString: as strings)")
    if values:
        out["values"] = values
    files = [f for f in helm.get("valueFiles") or [] if not f.startswith(("$", "http"))]
    if files:
        base = entry.data.get("path", ".")
        out["valuesFiles"] = [posixpath.normpath(posixpath.join(base, f)) for f in files]
    for f in set(helm.get("valueFiles") or []) - set(files):
        result.note(entry, where, f"helm value file {f!r} (another source or a URL) has no "
                    "counterpart")
    for key in sorted(set(helm) - _HELM_KEYS):
        result.note(entry, where, f"spec.source.helm.{key} has no counterpart")
    if out:
        entry.data["helm"] = out


def _typed(value: Any) -> Any:
    """A ``--set`` value as helm types it: true/false, null, integers without a leading 0."""
    text = str(value)
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if re.fullmatch(r"-?(0|[1-9][0-9]{0,17})", text):
        return int(text)
    return text


def _set(values: dict[str, Any], dotted: str, value: Any) -> bool:
    if not dotted or "[" in dotted or "\\" in dotted:
        return False
    *parents, last = dotted.split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            return False
    node[last] = value
    return True


def _kustomize(kustomize: dict[str, Any], entry: Entry, result: Import, where: str) -> None:
    for key in sorted(kustomize):
        result.note(entry, where, f"spec.source.kustomize.{key} has no counterpart: put it in "
                    "the kustomization.yaml of the path")


def _directory(directory: dict[str, Any], entry: Entry, result: Import, where: str) -> None:
    out: dict[str, Any] = {}
    if directory.get("recurse"):
        out["recurse"] = True
    for key in ("include", "exclude"):
        if directory.get(key):
            out[key] = [g.strip() for g in str(directory[key]).strip("{}").split(",") if g.strip()]
    if out:
        entry.data["directory"] = out
    for key in sorted(set(directory) - {"recurse", "include", "exclude"}):
        result.note(entry, where, f"spec.source.directory.{key} has no counterpart")


def _sync_policy(policy: dict[str, Any], entry: Entry, result: Import, where: str) -> None:
    automated = policy.get("automated")
    entry.data["prune"] = bool(automated and automated.get("prune"))
    if automated and automated.get("allowEmpty"):
        entry.data["allowEmpty"] = True
    if automated is None:
        entry.data["drift"] = "detect"
        result.note(entry, where, "no syncPolicy.automated (manual sync): drift: detect reports "
                    "drift and writes nothing; fleetsync has no manual sync")
    elif not automated.get("selfHeal"):
        result.note(entry, where, "automated without selfHeal: fleetsync corrects drift on every "
                    "run (drift: correct)")
    options = [str(o) for o in policy.get("syncOptions") or []]
    for option in options:
        if option == "CreateNamespace=true" and "namespace" in entry.data:
            entry.data["createNamespace"] = True
        elif option in _ALWAYS:
            result.note(entry, where, f"syncOption {option}: {_ALWAYS[option]}")
        else:
            result.note(entry, where, f"syncOption {option} has no counterpart")
    for key in sorted(set(policy) - {"automated", "syncOptions"}):
        result.note(entry, where, f"syncPolicy.{key} has no counterpart")


def _ignore(rules: list[dict[str, Any]], entry: Entry, result: Import, where: str) -> None:
    out = []
    for rule in rules:
        item = {k: rule[k] for k in ("group", "kind", "name", "jsonPointers") if rule.get(k)}
        if rule.get("managedFieldsManagers"):
            item["managedFields"] = rule["managedFieldsManagers"]
        if item.get("jsonPointers") or item.get("managedFields"):
            out.append(item)
        for key in sorted(set(rule) - _IGNORE_KEYS - {"managedFieldsManagers"}):
            result.note(entry, where, f"ignoreDifferences {key} has no counterpart")
    if out:
        entry.data["ignoreDifferences"] = out


def _project(name: str, projects: dict[str, Manifest], entry: Entry, result: Import,
             where: str) -> None:
    project = projects.get(name)
    if project is None:
        if name != "default":
            result.note(entry, where, f"AppProject {name!r} not among the inputs: no limits")
        return
    spec = project.spec
    for key in sorted(set(spec) - _PROJECT_KEYS):
        result.note(entry, where, f"AppProject {name} spec.{key} has no counterpart")
    namespaces = {str(d.get("namespace", "*")) for d in spec.get("destinations") or []}
    if namespaces and not any("*" in n or "!" in n for n in namespaces):
        entry.data["allowedNamespaces"] = sorted(namespaces)
    elif namespaces - {"*"}:
        result.note(entry, where, f"AppProject {name} destinations {sorted(namespaces)}: "
                    "patterns have no counterpart")
    allowed = _kinds(spec.get("namespaceResourceWhitelist")) + _kinds(
        spec.get("clusterResourceWhitelist"))
    if spec.get("namespaceResourceWhitelist") and allowed and "*" not in allowed:
        entry.data["allowedKinds"] = allowed
    elif spec.get("clusterResourceWhitelist") and "*" not in allowed:
        result.note(entry, where, f"AppProject {name} clusterResourceWhitelist without a "
                    "namespaceResourceWhitelist: allowedKinds does not tell scopes apart")
    denied = _kinds(spec.get("namespaceResourceBlacklist")) + _kinds(
        spec.get("clusterResourceBlacklist"))
    if [d for d in denied if d != "*"]:
        entry.data["deniedKinds"] = [d for d in denied if d != "*"]


def _kinds(items: Any) -> list[str]:
    """``{group, kind}`` as ``group/Kind`` (``core/`` for the core group, ``*`` for any)."""
    out = []
    for item in items or []:
        group, kind = str(item.get("group", "*")), str(item.get("kind", "*"))
        if group == "*" and kind == "*":
            out.append("*")
        elif group == "*":
            out.append(kind)
        else:
            out.append(f"{group or 'core'}/{kind}")
    return out
