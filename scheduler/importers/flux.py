"""Flux objects read into a fleet spec: GitRepository and HelmRepository become
sources, Kustomization and HelmRelease applications, all on one ``default`` cluster.
An OCIRepository becomes an ``oci:`` source (its ref, layer selector, insecure). A
HelmRelease's ``valuesFrom`` ConfigMaps are read where the inputs hold them
(``fluxvalues``); its release goes to its own namespace and is named as Flux
names it (``[targetNamespace-]name``) unless ``releaseName`` says otherwise.

Flux reconciles inside the one cluster it runs in, so every application selects
``default``; ``postBuild.substitute`` becomes that cluster's ``vars`` (the spec
has variables per cluster, not per application: a name two Kustomizations give
different values is a note). Object names become spec names; a name used in two
namespaces gets its namespace as prefix.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from scheduler.importers import fluximages, fluxpaths, fluxvalues
from scheduler.importers.fluxpaths import is_flux
from shared.spec.scalars import parse_duration
from shared.values import deep_merge
from scheduler.importers.common import Entry, Import, Manifest, clean_path, dns_name, guarded
from scheduler.importers.common import unique

CLUSTER = "default"
_KUSTOMIZATION_KEYS = {"sourceRef", "path", "prune", "dependsOn", "postBuild", "healthChecks",
                       "wait", "timeout", "targetNamespace", "serviceAccountName", "interval",
                       "suspend", "force", "deletionPolicy"}
_RELEASE_KEYS = {"chart", "values", "valuesFrom", "install", "interval", "targetNamespace", "releaseName",
                 "dependsOn", "suspend", "serviceAccountName", "timeout"}
_CONSUMED = ("GitRepository", "HelmRepository", "OCIRepository", "ConfigMap", *fluximages.KINDS)


def build(objects: list[Manifest], result: Import) -> None:
    names: dict[tuple[str, str, str], str] = {}
    for obj in objects:
        if obj.kind in ("GitRepository", "HelmRepository", "OCIRepository"):
            guarded(obj, result, partial(_source, obj, result, names))
    fluximages.build(objects, result, names)
    for obj in objects:
        if obj.kind in ("Kustomization", "HelmRelease") and is_flux(obj):
            taken = [v for k, v in names.items() if k[0] == "app"]
            names[("app", obj.namespace, obj.name)] = unique(
                dns_name(obj.name), taken, dns_name(f"{obj.namespace}-{obj.name}"))
    for obj in objects:
        if obj.kind == "Kustomization" and is_flux(obj):
            guarded(obj, result, partial(_kustomization, obj, result, names, objects))
        elif obj.kind == "HelmRelease":
            guarded(obj, result, partial(_release, obj, result, names, objects))
        elif obj.kind not in _CONSUMED or (obj.kind == "ConfigMap" and
                                           not fluxvalues.consumed(obj, objects)):
            result.skipped.append(f"{obj.where()}: not a Flux source or deployer")
    cluster = result.clusters.get(CLUSTER)
    if cluster is not None and "interval" in cluster.data:
        cluster.notes.append("interval: the shortest interval of the Kustomizations and "
                             "HelmReleases (fleetsync reconciles a cluster's applications "
                             "together)")



def _source(obj: Manifest, result: Import, names: dict[tuple[str, str, str], str]) -> None:
    spec = obj.spec
    name = unique(dns_name(obj.name), result.sources, dns_name(f"{obj.namespace}-{obj.name}"))
    entry = Entry({"name": name})
    if obj.kind == "OCIRepository":
        _oci(obj, entry, result)
        names[(obj.kind, obj.namespace, obj.name)] = name
        result.sources[name] = entry
        return
    if obj.kind == "HelmRepository":
        entry.data["helmRepository"] = spec.get("url", "")
    else:
        entry.data["url"] = spec.get("url", "")
        _ref(obj, entry, result)
    if spec.get("interval"):
        entry.data["interval"] = spec["interval"]
    if spec.get("secretRef"):
        result.note(entry, obj.where(), f"secretRef {spec['secretRef'].get('name')!r}: set "
                    "auth (usernameEnv/passwordEnv or sshKeyFile) on the workers")
    for key in sorted(set(spec) - {"url", "ref", "interval", "secretRef", "type"}):
        result.note(entry, obj.where(), f"spec.{key} has no counterpart")
    names[(obj.kind, obj.namespace, obj.name)] = name
    result.sources[name] = entry


def _oci(obj: Manifest, entry: Entry, result: Import) -> None:
    """An OCIRepository as an ``oci:`` source: Flux's ref precedence (digest over semver over
    tag; none is ``tag: latest``), ``layerSelector``, ``insecure``; keys and credentials
    are named in notes, never copied."""
    spec, where = obj.spec, obj.where()
    ref = spec.get("ref") or {}
    kind = next((k for k in ("digest", "semver", "tag") if ref.get(k)), "")
    oci: dict = {"url": spec.get("url", ""), kind or "tag": ref.get(kind) if kind else "latest"}
    if spec.get("layerSelector"):
        oci["layerSelector"] = dict(spec["layerSelector"])
    entry.data["oci"] = oci
    for key in ("interval", "insecure"):
        if key in spec:
            entry.data[key] = spec[key]
    if spec.get("verify"):
        result.note(entry, where, f"verify ({spec['verify'].get('provider', 'cosign')}): set "
                    "verify: {cosign: {publicKey: FILE}} with the key of secretRef "
                    f"{(spec['verify'].get('secretRef') or {}).get('name')!r} on the workers")
    if spec.get("secretRef"):
        result.note(entry, where, f"secretRef {spec['secretRef'].get('name')!r}: set auth "
                    "(usernameEnv/passwordEnv) on the workers")
    for key in sorted(set(spec) - {"url", "ref", "interval", "secretRef", "layerSelector",
                                   "insecure", "verify"}):
        result.note(entry, where, f"spec.{key} has no counterpart")


def _ref(obj: Manifest, entry: Entry, result: Import) -> None:
    """Flux's precedence: commit over name over semver over tag over branch; no ``ref`` at
    all is Flux's own default, the branch ``master`` (not the remote's default branch)."""
    ref = obj.spec.get("ref") or {}
    kind, value = _ref_of(ref)
    if kind:
        entry.data[kind] = value
    elif ref.get("name"):
        entry.data["branch"] = "master"
        result.note(entry, obj.where(), f"ref.name {ref['name']!r} (not refs/heads/ or "
                    "refs/tags/) has no counterpart: branch master is written, set the ref")
    else:
        entry.data["branch"] = "master"
        result.note(entry, obj.where(), "no spec.ref: Flux's default, the branch master "
                    "(defaultBranch: true would follow the remote's HEAD instead)")
    if ref.get("commit") and ref.get("branch"):
        result.note(entry, obj.where(), f"ref.branch {ref['branch']!r} with ref.commit: the "
                    "commit alone is kept")


def _ref_of(ref: dict[str, Any]) -> tuple[str, str]:
    if ref.get("commit"):
        return "commit", str(ref["commit"])
    name = str(ref.get("name") or "")
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if name.startswith(prefix) and len(name) > len(prefix):
            return kind, name[len(prefix):]
    if name:
        return "", ""
    for kind in ("semver", "tag", "branch"):
        if ref.get(kind):
            return kind, str(ref[kind])
    return "", ""


def _source_ref(obj: Manifest, ref: dict[str, Any], entry: Entry, result: Import,
                names: dict[tuple[str, str, str], str]) -> None:
    kind = ref.get("kind", "GitRepository")
    key = (kind, ref.get("namespace") or obj.namespace, ref.get("name", ""))
    if key not in names:
        names[key] = _placeholder_source(kind, str(ref.get("name", "")), result)
        result.note(entry, obj.where(), f"sourceRef {kind} {ref.get('name')!r} is not among "
                    f"the inputs: source {names[key]!r} is a placeholder")
    entry.data["source"] = names[key]


def _placeholder_source(kind: str, ref_name: str, result: Import) -> str:
    """A source that validates but points nowhere, for a sourceRef that was not read."""
    name = unique(dns_name(ref_name), result.sources, dns_name(f"{ref_name}-source"))
    entry = Entry({"name": name})
    if kind == "HelmRepository":
        entry.data["helmRepository"] = f"https://replace-me.invalid/{name}"
    else:
        entry.data.update(url=f"https://replace-me.invalid/{name}.git", branch="main")
    entry.notes.append(f"placeholder: {kind} {ref_name!r} was not among the inputs; fill url "
                       "and ref")
    result.sources[name] = entry
    return name


def _common(obj: Manifest, entry: Entry, result: Import,
            names: dict[tuple[str, str, str], str]) -> None:
    spec = obj.spec
    if spec.get("targetNamespace"):
        entry.data["namespace"] = spec["targetNamespace"]
    entry.data["clusters"] = {"names": [result.cluster(CLUSTER, "the cluster Flux runs in")]}
    deps = [names.get(("app", d.get("namespace") or obj.namespace, d.get("name", "")))
            for d in spec.get("dependsOn") or []]
    if deps:
        entry.data["dependsOn"] = [d for d in deps if d]
    if None in deps:
        result.note(entry, obj.where(), "a dependsOn entry not among the inputs was left out")
    if spec.get("suspend"):
        entry.data["suspend"] = True
    if spec.get("timeout"):
        entry.data["timeout"] = spec["timeout"]
    _interval(obj, result)
    if spec.get("serviceAccountName"):
        entry.data["serviceAccountName"] = spec["serviceAccountName"]
        entry.data["serviceAccountNamespace"] = dns_name(obj.namespace or "flux-system")


def _interval(obj: Manifest, result: Import) -> None:
    text = obj.spec.get("interval")
    if not text:
        return
    try:
        seconds = parse_duration(str(text))
    except ValueError:
        return                  # Flux refuses it too; the cluster keeps fleetsync's default
    cluster = result.clusters[CLUSTER]
    if seconds < cluster.data.get("_interval", float("inf")):
        cluster.data.update(_interval=seconds, interval=str(text))


def _kustomization(obj: Manifest, result: Import, names: dict[tuple[str, str, str], str],
                   objects: list[Manifest]) -> None:
    spec = obj.spec
    entry = Entry({"name": names[("app", obj.namespace, obj.name)]})
    _source_ref(obj, spec.get("sourceRef") or {}, entry, result, names)
    entry.data["path"] = clean_path(str(spec.get("path") or "."))
    held = fluxpaths.flux_objects_under(obj, entry.data["path"], objects)
    if held:
        shown = ", ".join(o.where() for o in held[:4]) + (f" and {len(held) - 4} more"
                                                          if len(held) > 4 else "")
        result.note(entry, obj.where(), f"path {entry.data['path']} holds Flux objects imported "
                    f"here ({shown}): fleetsync applies them as plain objects (Flux's CRDs "
                    "needed); take them out of the path once fleetsync runs these applications")
    _common(obj, entry, result, names)
    entry.data["prune"] = bool(spec.get("prune", False))
    policy = spec.get("deletionPolicy") or "MirrorPrune"   # what deleting it does in Flux
    if policy == "Delete" or (policy == "MirrorPrune" and entry.data["prune"]):
        entry.data["onRemoval"] = "prune"
    elif policy not in ("MirrorPrune", "Orphan"):
        result.note(entry, obj.where(), f"deletionPolicy {policy!r} has no counterpart")
    entry.data["wait"] = bool(spec.get("wait", False) or spec.get("healthChecks"))
    if spec.get("force"):
        entry.data["force"] = True
    for check in spec.get("healthChecks") or []:
        result.note(entry, obj.where(), f"healthChecks {check.get('kind')} {check.get('name')}: "
                    "no per-object check; wait: true waits for every object instead")
    _substitute(obj, result)
    for key in sorted(set(spec) - _KUSTOMIZATION_KEYS):
        result.note(entry, obj.where(), f"spec.{key} has no counterpart")
    result.applications[entry.data["name"]] = entry


def _substitute(obj: Manifest, result: Import) -> None:
    post = obj.spec.get("postBuild") or {}
    cluster = result.clusters[CLUSTER]
    variables = cluster.data.setdefault("vars", {})
    for key, value in (post.get("substitute") or {}).items():
        if key in variables and variables[key] != str(value):
            result.note(cluster, obj.where(), f"postBuild.substitute {key}={value!r} differs "
                        f"from another Kustomization's {variables[key]!r}; the first is kept")
        else:
            variables.setdefault(key, str(value))
    if post.get("substituteFrom"):
        result.note(cluster, obj.where(), "postBuild.substituteFrom (ConfigMaps, Secrets) has "
                    "no counterpart: copy the values into vars")
    if not variables:
        del cluster.data["vars"]


def _release(obj: Manifest, result: Import, names: dict[tuple[str, str, str], str],
             objects: list[Manifest]) -> None:
    spec = obj.spec
    chart = ((spec.get("chart") or {}).get("spec")) or {}
    entry = Entry({"name": names[("app", obj.namespace, obj.name)]})
    if not chart:
        result.skipped.append(f"{obj.where()}: no spec.chart.spec (chartRef is not supported)")
        return
    ref = chart.get("sourceRef") or {}
    _source_ref(obj, ref, entry, result, names)
    if ref.get("kind") == "HelmRepository":
        entry.data["chart"] = {"name": chart.get("chart", ""), "version": chart.get("version", "*")}
    else:
        entry.data["path"] = clean_path(str(chart.get("chart", ".")))
    _common(obj, entry, result, names)
    if "namespace" not in entry.data and obj.namespace:   # Flux: the release's own namespace
        entry.data["namespace"] = obj.namespace
    target = spec.get("targetNamespace")
    helm: dict[str, Any] = {"releaseName": spec.get("releaseName") or
                            (f"{target}-{obj.name}" if target else obj.name)}
    values = fluxvalues.values(obj, objects, partial(result.note, entry, obj.where()))
    values = deep_merge(values, spec.get("values") or {})
    if values:
        helm["values"] = values
    _values_files(obj, chart, entry, helm, result)
    entry.data["helm"] = helm
    entry.data["onRemoval"] = "prune"        # deleting a HelmRelease uninstalls the release
    install = spec.get("install") or {}
    if install.get("createNamespace") and "namespace" in entry.data:
        entry.data["createNamespace"] = True
    for key in sorted(set(install) - {"createNamespace"}):
        result.note(entry, obj.where(), f"spec.install.{key} has no counterpart")
    for key in sorted(set(spec) - _RELEASE_KEYS):
        result.note(entry, obj.where(), f"spec.{key} has no counterpart")
    result.applications[entry.data["name"]] = entry


def _values_files(obj: Manifest, chart: dict[str, Any], entry: Entry, helm: dict[str, Any],
                  result: Import) -> None:
    files = [clean_path(str(f)) for f in chart.get("valuesFiles") or []]
    if not files:
        return
    if "path" not in entry.data:
        result.note(entry, obj.where(), "chart.spec.valuesFiles of a HelmRepository chart have "
                    "no counterpart (valuesFiles are files of a Git source)")
        return
    helm["valuesFiles"] = files
    result.note(entry, obj.where(), "chart.spec.valuesFiles: Flux uses them instead of the "
                "chart's values.yaml, fleetsync merges them over it")
