"""OCI artifacts of manifests as sources (``oci:``, Flux's ``OCIRepository``): digests and trees.

An ``oci:`` source has no commits; its *revision* is the hex of its manifest's
sha256 digest (as a Helm repository's is the hex of its index's). ``fetch``
resolves the source's ``tag``, ``semver`` range (over the repository's tag list,
the same rules as Git semver refs) or pinned ``digest`` to a manifest, and
accepts that digest only once

1. the manifest is an image manifest with the layer ``layerSelector`` asks for
   (its ``mediaType``, else the first layer), whose declared size is within the
   cap (``maxSize``, else ``ocitar.Limits``): a 1 GB layer is refused here,
   before a byte of it is read;
2. with ``verify: {cosign: {publicKey}}``, the cosign signature stored beside it
   (``sha256-<hex>.sig``) verifies (``workers.fetch.ociverify``);
3. the layer was downloaded (verified against its digest by the registry client)
   and extracted with the guards of ``workers.fetch.ocitar`` into
   ``root/trees/<hex>``, read-only, renamed into place whole.

Any refusal is a ``SourceError`` raised before the revision is recorded, so the
units keep the last accepted digest and their status says why, exactly as a Git
source whose head is unsigned (``workers.fetch.gitverify``). ``checkout`` gives
the tree of a revision, cached per digest on the host like Git checkouts (a host
that has not fetched it pulls it by digest, with the same checks);
``revision_info`` gives what history shows of it: the tag it was found by, the
digest and the ``org.opencontainers.image.*`` annotations.

Registry traffic goes through ``workers.fetch.ociregistry`` (transport rules,
token exchange, size caps, digests); this module adds no HTTP of its own.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from shared.errors import SourceError
from shared.ocirefs import OciUrlError, parse_oci_url
from shared.semver import source_tag
from shared.spec.model import Source
from workers.fetch.gitdisk import collect_trees, locked, make_read_only, remove_tree, touch
from workers.fetch.ociauth import login_for
from workers.fetch.ociregistry import DEFAULT_TIMEOUT, Manifest, RegistryClient
from workers.fetch.ocitar import Limits, check_declared, extract_layer
from workers.fetch.ociverify import (MAX_PAYLOAD_BYTES, SignatureLayer, load_public_key,
                                     signature_layers, signature_tag, verify_signature)

ANNOTATIONS = ("org.opencontainers.image.source", "org.opencontainers.image.revision",
               "org.opencontainers.image.created")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
TREES_KEPT = 20


class OciArtifacts:
    """The artifacts of ``oci:`` sources on this host, below one root directory."""

    def __init__(self, root: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT, limits: Limits = Limits()) -> None:
        self.root = Path(root)
        self.timeout = timeout
        self.limits = limits
        self._environ = os.environ if environ is None else environ

    # -- public API ------------------------------------------------------------------

    def fetch(self, source: Source) -> str:
        """The hex digest the source's ref names now, once verified and extracted here."""
        client, repository = self.client(source)
        tag, reference = self._reference(source, client, repository)
        manifest = client.manifest(repository, reference)
        layer = self._layer(source, manifest)
        self._verify(source, client, repository, manifest.digest)
        self._tree(source, client, manifest, layer)
        self._remember(manifest, tag)
        return manifest.digest.partition(":")[2]

    def checkout(self, source: Source, revision: str) -> Path:
        """The read-only tree of ``revision`` (a hex digest): this host's, else pulled by digest."""
        tree = self.tree_path(revision)
        if tree.is_dir():
            touch(tree)
            return tree
        client, repository = self.client(source)
        manifest = client.manifest(repository, "sha256:" + _hex(source, revision))
        self._verify(source, client, repository, manifest.digest)
        tree = self._tree(source, client, manifest, self._layer(source, manifest))
        self._remember(manifest, "")
        return tree

    def revision_info(self, source: Source, revision: str) -> dict[str, str]:
        """Tag, digest and annotations of ``revision``, from this host's record of it."""
        path = self.root / "manifests" / f"{_hex(source, revision)}.json"
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SourceError(f"source {source.name}: artifact {revision} not fetched on this "
                              "host") from exc
        notes = record.get("annotations") or {}
        return {"tag": str(record.get("tag", "")), "digest": f"sha256:{revision}",
                **{key: str(notes.get(key, "")) for key in ANNOTATIONS}}

    def tree_path(self, revision: str) -> Path:
        return self.root / "trees" / revision

    def client(self, source: Source) -> tuple[RegistryClient, str]:
        """The registry client for ``source`` and the repository it names."""
        try:
            url = parse_oci_url(source.url)
        except OciUrlError as exc:
            raise SourceError(f"source {source.name}: {exc}") from None
        return RegistryClient(url.host, who=f"source {source.name}", plain_http=source.insecure,
                              login=login_for(source, self._environ), timeout=self.timeout,
                              trusted_realm=source.auth.token_realm), url.path

    # -- resolving -------------------------------------------------------------------

    def _reference(self, source: Source, client: RegistryClient,
                   repository: str) -> tuple[str, str]:
        """(tag followed or "", the reference to read: a tag or a digest)."""
        if source.ref_kind == "digest":
            return "", source.ref
        if source.ref_kind == "tag":
            return source.ref, source.ref
        best = source_tag(source.name, client.tags(repository), source.ref, source.url)
        return best, best

    def _layer(self, source: Source, manifest: Manifest) -> dict[str, Any]:
        """The layer descriptor the source extracts, its declared size within the cap."""
        where = f"source {source.name}: artifact {manifest.digest}"
        body = manifest.json()
        if manifest.media_type in INDEX_TYPES or body.get("mediaType") in INDEX_TYPES:
            raise SourceError(f"{where} is an index (a multi-platform image), not an artifact "
                              "of manifests")
        layers = [d for d in body.get("layers") or [] if isinstance(d, dict)]
        wanted = source.oci.media_type if source.oci else ""
        chosen = next((d for d in layers if not wanted or d.get("mediaType") == wanted), None)
        if chosen is None:
            found = ", ".join(sorted({str(d.get("mediaType")) for d in layers})) or "no layers"
            raise SourceError(f"{where} has no layer of media type {wanted!r} "
                              f"(layerSelector.mediaType); it has {found}")
        size = chosen.get("size")
        if not isinstance(size, int) or size < 0 or not isinstance(chosen.get("digest"), str):
            raise SourceError(f"{where}: its layer has no valid size and digest")
        check_declared(where, size, self._limits(source))
        return chosen

    def _verify(self, source: Source, client: RegistryClient, repository: str,
                digest: str) -> None:
        verify = source.verify
        if verify is None or verify.kind != "cosign":
            return
        where = f"source {source.name}: verify.cosign.publicKey {verify.file}"
        try:
            pem = Path(verify.file).read_bytes()
        except OSError:
            raise SourceError(f"{where} is not readable") from None
        key = load_public_key(pem, where)
        try:
            signatures = client.manifest(repository, signature_tag(digest)).json()
        except SourceError:
            signatures = {}
        layers = []
        with tempfile.TemporaryDirectory(prefix="fleetsync-sig-", dir=self._tmp()) as tmp:
            for i, descriptor in enumerate(signature_layers(signatures)):
                blob = client.blob(repository, str(descriptor.get("digest")),
                                   int(descriptor.get("size") or 0), Path(tmp) / str(i),
                                   MAX_PAYLOAD_BYTES)
                layers.append(SignatureLayer(blob.read_bytes(), {str(k): str(v) for k, v in
                                                                     descriptor["annotations"].items()}))
        verify_signature(source.name, digest, layers, key)

    # -- trees -----------------------------------------------------------------------

    def _tree(self, source: Source, client: RegistryClient, manifest: Manifest,
              layer: dict[str, Any]) -> Path:
        revision = manifest.digest.partition(":")[2]
        dest = self.tree_path(revision)
        if dest.is_dir():
            touch(dest)
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.root / "locks" / f"tree-{revision}.lock", self.timeout * 2, source):
            if not dest.is_dir():
                self._extract(source, client, manifest, layer, dest)
        collect_trees(dest.parent, TREES_KEPT, keep=dest)
        return dest

    def _extract(self, source: Source, client: RegistryClient, manifest: Manifest,
                 layer: dict[str, Any], dest: Path) -> None:
        where = f"source {source.name}: artifact {manifest.digest}"
        limits = self._limits(source)
        work = Path(tempfile.mkdtemp(prefix=f".{dest.name[:12]}-", dir=dest.parent))
        blob = work.with_name(work.name + ".layer")
        try:
            client.blob(manifest.repository, layer["digest"], layer["size"], blob,
                        limits.layer_bytes)
            with open(blob, "rb") as raw:
                extract_layer(raw, work, digest=layer["digest"], declared=layer["size"],
                              limits=limits, where=where)
            make_read_only(work)
            work.rename(dest)
        except BaseException:
            remove_tree(work)
            raise
        finally:
            blob.unlink(missing_ok=True)

    def _remember(self, manifest: Manifest, tag: str) -> None:
        """What history shows of a digest: the tag it was found by and its annotations."""
        path = self.root / "manifests" / f"{manifest.digest.partition(':')[2]}.json"
        if path.is_file() and not tag:
            return
        notes = manifest.json().get("annotations")
        record = {"tag": tag, "annotations": {k: v for k, v in (notes or {}).items()
                                              if k in ANNOTATIONS and isinstance(v, str)}}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=path.parent)
        with os.fdopen(fd, "w") as out:
            json.dump(record, out)
        os.replace(tmp, path)

    def _limits(self, source: Source) -> Limits:
        if source.max_size:
            return Limits(layer_bytes=source.max_size, tree_bytes=max(source.max_size,
                                                                      self.limits.tree_bytes),
                          files=self.limits.files)
        return self.limits

    def _tmp(self) -> Path:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp


def commit_fields(info: Mapping[str, str]) -> dict[str, str]:
    """``revision_info`` as the commit fields history entries carry: ``subject`` names the
    tag, the digest and the source and revision annotations; ``committed_at`` is ``created``."""
    notes = [f"{key.rpartition('.')[2]} {info[key]}" for key in ANNOTATIONS[:2] if info.get(key)]
    tag = f"{info['tag']} " if info.get("tag") else ""
    return {"author": "", "author_email": "", "committed_at": info.get(ANNOTATIONS[2], ""),
            "subject": f"oci {tag}{info['digest']}" + (f" ({', '.join(notes)})" if notes else "")}


def _hex(source: Source, revision: str) -> str:
    if len(revision) != 64 or any(c not in "0123456789abcdef" for c in revision):
        raise SourceError(f"source {source.name}: revision {revision!r} is not an artifact digest")
    return revision
