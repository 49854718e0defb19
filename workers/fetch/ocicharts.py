"""Helm charts from OCI registries (``helmRepository: oci://host/path``), pulled once per host.

A chart ``web`` of ``oci://host/path`` is the repository ``path/web``; its
versions are the repository's tags (Helm writes ``+`` as ``_`` in a tag, read
back here). ``fetch`` resolves every ``chart: {name, version}`` the source's
applications ask for (an exact version, or the highest tag in a semver range,
read with ``shared.semver`` as Git's semver refs are) to a manifest digest. With
one chart, that manifest's digest (hex) is the source's revision; with several,
the sha256 of the resolved set. The resolution is kept on this host under
``root/resolutions/<revision>.json`` so a render reads the digest its revision
fixed, and a new tag in range moves the revision at the next interval, as an
https repository's index does.

A host that renders a revision another host fetched reads the manifest at that
digest (a one-chart source's revision is it), so every host renders the same
chart; a set's revision is resolved again there.

``chart`` reads the manifest by digest (kept under ``root/manifests/`` once it
matched), takes its one layer of ``HELM_CHART_LAYER``, and streams that blob,
verified against the layer digest, into ``root/charts/<digest>.tgz`` once per
host (a file lock lets one worker process download it while the others wait).
The transport, authentication and size rules are ``workers.fetch.ociregistry``'s.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from shared.errors import SourceError
from shared.logs import get_logger
from shared.ocirefs import DIGEST, OciUrl, OciUrlError, parse_oci_url
from shared.semver import matching_max
from shared.spec.model import Chart, Source
from workers.fetch.helmrepo import MAX_CHART_BYTES, ChartArchive, locked, write_atomically
from workers.fetch.ociauth import login_for
from workers.fetch.ociregistry import DEFAULT_TIMEOUT, Manifest, RegistryClient

HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"

log = get_logger("fleetsync.helm")


def is_oci(source: Source) -> bool:
    return source.helm_repository and source.url.lower().startswith("oci://")


def _key(chart: Chart) -> str:
    return f"{chart.name}@{chart.version}"


class OciCharts:
    """Chart resolutions, manifests and verified chart archives, below one root directory."""

    def __init__(self, root: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT,
                 environ: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.timeout = timeout
        self._environ = os.environ if environ is None else environ

    def _client(self, source: Source) -> tuple[RegistryClient, OciUrl]:
        try:
            url = parse_oci_url(source.url)
        except OciUrlError as exc:
            raise SourceError(f"source {source.name}: {exc}") from exc
        client = RegistryClient(url.host, who=f"source {source.name}", plain_http=source.insecure,
                                login=login_for(source, self._environ), timeout=self.timeout,
                                trusted_realm=source.auth.token_realm)
        return client, url

    # -- fetch: versions to digests ----------------------------------------------------------

    def fetch(self, source: Source, charts: Iterable[Chart]) -> str:
        """Resolve ``charts`` in the registry; the revision fixes the manifest digest of each."""
        client, url = self._client(source)
        wanted = {_key(c): c for c in charts}
        resolved = {key: self._resolve(client, url, source, chart)
                    for key, chart in sorted(wanted.items())}
        if len(resolved) == 1:
            revision = next(iter(resolved.values()))["digest"].split(":", 1)[1]
        else:
            canonical = json.dumps(resolved, sort_keys=True, separators=(",", ":")).encode()
            revision = hashlib.sha256(canonical).hexdigest()
        dest = self._resolution_path(revision)
        if not dest.is_file():
            write_atomically(dest, json.dumps(resolved, indent=1, sort_keys=True).encode())
        return revision

    def _resolve(self, client: RegistryClient, url: OciUrl, source: Source,
                 chart: Chart) -> dict[str, str]:
        repository = url.repository(chart.name)
        tags = client.tags(repository)
        by_version = {tag.replace("_", "+"): tag for tag in tags}
        best = chart.version if chart.version in by_version else matching_max(by_version,
                                                                               chart.version)
        if best is None:
            shown = ", ".join(sorted(by_version)[-15:]) or "none"
            raise SourceError(f"source {source.name}: chart {chart.name}: no version matches "
                              f"{chart.version!r} in {url.host}/{repository} (tags: {shown})")
        manifest = client.manifest(repository, by_version[best])
        self._keep(manifest)
        return {"chart": chart.name, "version": best, "tag": by_version[best],
                "repository": repository, "digest": manifest.digest}

    def _resolution_path(self, revision: str) -> Path:
        return self.root / "resolutions" / f"{revision}.json"

    def _keep(self, manifest: Manifest) -> None:
        dest = self.root / "manifests" / f"{manifest.digest.split(':', 1)[1]}.json"
        if not dest.is_file():
            write_atomically(dest, manifest.data)

    # -- render: a digest to a verified archive -------------------------------------------------

    def chart(self, source: Source, chart: Chart, revision: str) -> ChartArchive:
        """The archive of ``chart`` as ``revision`` fixed it, verified, downloaded once per host."""
        entry = self._entry(source, chart, revision)
        client, _ = self._client(source)
        repository, digest = entry["repository"], entry["digest"]
        what = f"source {source.name}: chart {chart.name} {entry['version']} ({digest})"
        layer = _chart_layer(what, self._manifest(client, repository, digest))
        hexdigest = layer["digest"].split(":", 1)[1]
        dest = self.root / "charts" / f"{hexdigest}.tgz"
        if not dest.is_file():
            with locked(dest.with_suffix(".lock")):
                if not dest.is_file():
                    client.blob(repository, layer["digest"], int(layer["size"]), dest,
                                MAX_CHART_BYTES)
                    log.info("chart pulled", source=source.name, chart=chart.name,
                             version=entry["version"], digest=digest)
        return ChartArchive(chart.name, entry["version"], hexdigest, dest)

    def _entry(self, source: Source, chart: Chart, revision: str) -> dict[str, str]:
        path = self._resolution_path(revision)
        if not path.is_file():                  # another host fetched it: this one has not yet
            pinned = self._pinned(source, chart, revision)
            if pinned is not None:
                return pinned
            found = self.fetch(source, [chart])
            if found != revision:
                log.warning("chart moved since its revision was recorded; rendering the newer "
                            "one", source=source.name, revision=revision, now=found)
            path = self._resolution_path(found)
        resolved = json.loads(path.read_text())
        entry = resolved.get(_key(chart))
        if entry is None:                       # the spec asks for a chart the fetch did not see
            client, url = self._client(source)
            entry = self._resolve(client, url, source, chart)
        return dict(entry)

    def _pinned(self, source: Source, chart: Chart, revision: str) -> dict[str, str] | None:
        """The chart at the manifest digest ``revision`` names (a one-chart source's revision),
        read from the registry; None when that manifest is not there (a set's revision)."""
        client, url = self._client(source)
        repository = url.repository(chart.name)
        try:
            manifest = client.manifest(repository, f"sha256:{revision}")
        except SourceError:
            return None
        self._keep(manifest)
        version = (manifest.json().get("annotations") or {}).get("org.opencontainers.image.version")
        return {"chart": chart.name, "version": str(version or chart.version), "tag": "",
                "repository": repository, "digest": manifest.digest}

    def _manifest(self, client: RegistryClient, repository: str, digest: str) -> dict[str, Any]:
        if not DIGEST.fullmatch(digest):
            raise SourceError(f"{client.who}: {digest!r} is not a sha256 manifest digest")
        kept = self.root / "manifests" / f"{digest.split(':', 1)[1]}.json"
        if kept.is_file():
            data = kept.read_bytes()
            if "sha256:" + hashlib.sha256(data).hexdigest() == digest:
                return Manifest(repository, digest, digest, "", data).json()
        manifest = client.manifest(repository, digest)
        self._keep(manifest)
        return manifest.json()


def _chart_layer(what: str, manifest: dict[str, Any]) -> dict[str, Any]:
    layers = [layer for layer in manifest.get("layers") or [] if isinstance(layer, dict)
              and layer.get("mediaType") == HELM_CHART_LAYER]
    if len(layers) != 1:
        types = sorted({str(layer.get("mediaType")) for layer in manifest.get("layers") or []
                        if isinstance(layer, dict)})
        raise SourceError(f"{what}: is not a Helm chart: it has {len(layers)} layers of "
                          f"{HELM_CHART_LAYER} (layers: {', '.join(types) or 'none'})")
    layer = layers[0]
    if not isinstance(layer.get("size"), int) or not DIGEST.fullmatch(str(layer.get("digest"))):
        raise SourceError(f"{what}: its chart layer has no sha256 digest or size")
    return layer
