"""Flux's image automation read into the fleet spec: ``ImagePolicy`` objects (with the
``ImageRepository`` each names) become ``images:`` entries, an ``ImageUpdateAutomation``
the ``imageUpdates`` of the Git source it names (image.toolkit.fluxcd.io/v1beta2).

A policy keeps its namespace, so the setter markers already in the repository
(``# {"$imagepolicy": "NAMESPACE:NAME"}``) name it as before. An image without a
registry host is Docker Hub's, as Flux reads it (``nginx`` is
``docker.io/library/nginx``). Credentials (``secretRef``), the commit message (a Go
template, which fleetsync does not run), a signing key's Secret and what else has no
counterpart are named in notes, never copied.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from scheduler.importers.common import Entry, Import, Manifest, clean_path, dns_name, guarded
from scheduler.importers.common import unique

KINDS = ("ImageRepository", "ImagePolicy", "ImageUpdateAutomation")
_REPOSITORY_KEYS = {"image", "interval", "secretRef", "insecure"}
_POLICY_KEYS = {"imageRepositoryRef", "policy", "filterTags"}
_AUTOMATION_KEYS = {"sourceRef", "git", "update", "interval"}


def build(objects: list[Manifest], result: Import, names: dict[tuple[str, str, str], str]) -> None:
    """Every ImagePolicy into ``result.images``, every ImageUpdateAutomation onto its source."""
    repositories = {(o.namespace, o.name): o for o in objects if o.kind == "ImageRepository"}
    used: set[tuple[str, str]] = set()
    for obj in objects:
        if obj.kind == "ImagePolicy":
            guarded(obj, result, partial(_policy, obj, result, repositories, used))
        elif obj.kind == "ImageUpdateAutomation":
            guarded(obj, result, partial(_automation, obj, result, names))
    for key, obj in repositories.items():
        if key not in used:
            result.skipped.append(f"{obj.where()}: no ImagePolicy names it")


def image_repository(image: str) -> str:
    """Flux's ``spec.image`` as ``HOST/PATH`` (Docker Hub's when no host is given)."""
    first, _, rest = image.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return image
    return f"docker.io/{image}" if rest else f"docker.io/library/{image}"


def _policy(obj: Manifest, result: Import, repositories: dict[tuple[str, str], Manifest],
            used: set[tuple[str, str]]) -> None:
    spec, where = obj.spec, obj.where()
    ref = spec.get("imageRepositoryRef") or {}
    key = (ref.get("namespace") or obj.namespace, str(ref.get("name", "")))
    repository = repositories.get(key)
    if repository is None:
        result.skipped.append(f"{where}: its ImageRepository {key[1]!r} is not among the inputs")
        return
    used.add(key)
    name = unique(dns_name(obj.name), result.images, dns_name(f"{obj.namespace}-{obj.name}"))
    entry = Entry({"name": name})
    if obj.namespace:
        entry.data["namespace"] = dns_name(obj.namespace)
    entry.data["repository"] = image_repository(str(repository.spec.get("image", "")))
    entry.data["policy"] = dict(spec.get("policy") or {})
    if spec.get("filterTags"):
        entry.data["filterTags"] = {k: v for k, v in dict(spec["filterTags"]).items()
                                    if k in ("pattern", "extract")}
    _repository_keys(repository, entry, result)
    if name != dns_name(obj.name):
        result.note(entry, where, f"named {name!r} (the name was taken): markers naming "
                    f"{obj.name!r} must be changed to it")
    for extra in sorted(set(spec) - _POLICY_KEYS):
        result.note(entry, where, f"spec.{extra} has no counterpart")
    result.images[name] = entry


def _repository_keys(repository: Manifest, entry: Entry, result: Import) -> None:
    spec, where = repository.spec, repository.where()
    for key in ("interval", "insecure"):
        if key in spec:
            entry.data[key] = spec[key]
    if spec.get("secretRef"):
        result.note(entry, where, f"secretRef {spec['secretRef'].get('name')!r}: set auth "
                    "(usernameEnv/passwordEnv) with the registry account on the workers")
    for extra in sorted(set(spec) - _REPOSITORY_KEYS):
        result.note(entry, where, f"spec.{extra} has no counterpart")


def _automation(obj: Manifest, result: Import, names: dict[tuple[str, str, str], str]) -> None:
    spec, where = obj.spec, obj.where()
    ref = spec.get("sourceRef") or {}
    key = (str(ref.get("kind", "GitRepository")), ref.get("namespace") or obj.namespace,
           str(ref.get("name", "")))
    source = result.sources.get(names.get(key, ""))
    if source is None or "url" not in source.data:
        result.skipped.append(f"{where}: its sourceRef {key[0]} {key[2]!r} is not a Git "
                              "source among the inputs")
        return
    git = spec.get("git") or {}
    commit = git.get("commit") or {}
    updates: dict[str, Any] = {"path": clean_path(str((spec.get("update") or {}).get("path",
                                                                                     ".")))}
    if commit.get("author"):
        updates["author"] = {k: commit["author"][k] for k in ("name", "email")
                             if k in commit["author"]}
    branch = ((git.get("push") or {}).get("branch")
              or ((git.get("checkout") or {}).get("ref") or {}).get("branch"))
    if branch and branch != source.data.get("branch"):
        updates["push"] = {"branch": branch}
    if spec.get("interval"):
        updates["interval"] = spec["interval"]
    source.data["imageUpdates"] = updates
    _automation_notes(obj, source, result)


def _automation_notes(obj: Manifest, source: Entry, result: Import) -> None:
    spec, where = obj.spec, obj.where()
    git = spec.get("git") or {}
    commit = git.get("commit") or {}
    if commit.get("messageTemplate"):
        result.note(source, where, "git.commit.messageTemplate is a Go template: write "
                    "imageUpdates.messageTemplate with {changes}, {count} and {source}")
    if commit.get("signingKey"):
        secret = (commit["signingKey"].get("secretRef") or {}).get("name")
        result.note(source, where, f"git.commit.signingKey (Secret {secret!r}): set "
                    "imageUpdates.signingKey: {gpg: FILE} with that key on the workers")
    checkout = ((git.get("checkout") or {}).get("ref") or {}).get("branch")
    if checkout and checkout != source.data.get("branch"):
        result.note(source, where, f"git.checkout.ref.branch {checkout!r}: the source's own "
                    "ref is what is checked out")
    if (git.get("push") or {}).get("refspec"):
        result.note(source, where, "git.push.refspec has no counterpart (push.branch does)")
    if (spec.get("update") or {}).get("strategy", "Setters") != "Setters":
        result.note(source, where, "update.strategy: only Setters markers are updated")
    for extra in sorted(set(spec) - _AUTOMATION_KEYS):
        result.note(source, where, f"spec.{extra} has no counterpart")
