"""Helm chart repositories for the fetch and render stages: the index, and chart archives
downloaded once per host.

A Helm repository source (``helmRepository: https://...``) has no commits; its
*revision* is the sha256 of its ``index.yaml``. ``fetch`` downloads the index
(at most once per source interval: ``stages.current_revision`` decides when),
keeps it on this host under ``root/indexes/<sha256>.yaml`` and returns the
digest. ``chart`` resolves an application's ``chart: {name, version}`` in the
index of a revision (an exact version, or the highest version in a semver range,
read with ``shared.semver`` as Git's semver refs are) and returns the archive,
downloaded once per host into ``root/charts/`` and shared by every render of
every worker process there, like Git mirrors. An archive is verified against
the digest the index gives before it is renamed into place, so a file in the
cache is one that matched; a mismatch (a tampered or swapped archive) is refused
and never stored.

Transports follow the Git sources' rules: ``https://``; plain ``http://`` only
with ``insecure: true`` and never with credentials; credentials come from the
environment variables the source names (``auth: {usernameEnv, passwordEnv}``)
and are sent to the repository's own origin (scheme, host and port) over
``https://`` only, never after a redirect. ``oci://`` registries are read by
``workers.fetch.ocicharts`` instead (the stages send them there).

The chart URLs an index gives are written by whoever writes the index, so they
obey the same rules as the source's own URL (``_chart_url``): ``https://`` to any
host (charts often live beside the index, on a release host), ``http://`` only
when the source itself may use it (``insecure: true``, no credentials), and
nothing else: a ``file://`` URL would read the worker's disk. A refused URL is
named in the error before anything is opened. The opener has no handler for
``file:``, ``ftp:`` or ``data:`` either, so a redirect cannot reach them.

Errors: the repository unreachable, a timeout, a 5xx or 429 are
``TransientError``; a chart or version that is not in the index (named, with
what is there), credentials refused, a digest mismatch are ``SourceError``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from shared.errors import SourceError, TransientError
from shared.git_urls import scrub_url
from shared.logs import get_logger
from shared.semver import matching_max, parse_version
from shared.spec.model import Auth, Chart, Source
from shared.yamlsafe import load_documents
from workers.fetch.httptransport import http_only_opener, same_https_origin
from workers.fetch.ociauth import login_for

DEFAULT_TIMEOUT = 60.0
MAX_INDEX_BYTES = 64 * 1024 * 1024
MAX_CHART_BYTES = 32 * 1024 * 1024
_DIGEST = re.compile(r"[0-9a-f]{64}")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")

log = get_logger("fleetsync.helm")


@dataclass(frozen=True)
class ChartArchive:
    """A verified chart archive on this host, and what the index said of it."""

    name: str
    version: str
    digest: str            # sha256 hex of the archive, as the index gives it
    path: Path


class ChartRepositories:
    """Indexes and verified chart archives of Helm repositories, below one root directory."""

    def __init__(self, root: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT,
                 environ: Mapping[str, str] | None = None) -> None:
        self.root = Path(root)
        self.timeout = timeout
        self._environ = os.environ if environ is None else environ
        self._opener = http_only_opener()

    # -- the index ------------------------------------------------------------------

    def fetch(self, source: Source) -> str:
        """Download the source's index; its sha256 is the source's revision."""
        base = _check(source)
        data = self._get(source, base + "index.yaml", MAX_INDEX_BYTES, "index.yaml")
        digest = hashlib.sha256(data).hexdigest()
        dest = self.index_path(digest)
        if not dest.is_file():
            write_atomically(dest, data)
        return digest

    def index_path(self, revision: str) -> Path:
        return self.root / "indexes" / f"{revision}.yaml"

    def index(self, source: Source, revision: str) -> dict[str, Any]:
        """The entries of the index at ``revision``; fetched again when this host lacks it."""
        if not _DIGEST.fullmatch(revision):
            raise SourceError(f"source {source.name}: revision {revision!r} is not the sha256 "
                              "of a Helm repository index")
        path = self.index_path(revision)
        if not path.is_file():
            found = self.fetch(source)       # another host fetched it: this one has not yet
            if found != revision:
                log.warning("repository index moved since its revision was recorded; rendering "
                            "the newer one", source=source.name, revision=revision, now=found)
            path = self.index_path(found)
        return _entries(source, path)

    # -- charts ---------------------------------------------------------------------

    def resolve(self, source: Source, chart: Chart, revision: str) -> dict[str, Any]:
        """The index entry of the chart version ``chart`` asks for."""
        entries = self.index(source, revision)
        versions = entries.get(chart.name)
        where = f"source {source.name}: chart {chart.name}"
        if not versions:
            known = ", ".join(sorted(entries)[:20]) or "none"
            raise SourceError(f"{where} is not in the repository {scrub_url(source.url)} "
                              f"(charts there: {known})")
        by_version = {str(v.get("version")): v for v in versions if isinstance(v, dict)}
        exact = chart.version if chart.version in by_version else None
        best = exact or matching_max(by_version, chart.version)
        if best is None:
            shown = sorted(by_version, key=lambda v: _order(v), reverse=True)
            raise SourceError(f"{where}: no version matches {chart.version!r} (versions: "
                              f"{', '.join(shown[:15])}{' ...' if len(shown) > 15 else ''})")
        return by_version[best]

    def chart(self, source: Source, chart: Chart, revision: str) -> ChartArchive:
        """The archive of the chart version ``chart`` asks for at ``revision``, verified."""
        entry = self.resolve(source, chart, revision)
        version = str(entry["version"])
        what = f"source {source.name}: chart {chart.name} {version}"
        digest = str(entry.get("digest") or "").lower()
        if not _DIGEST.fullmatch(digest):
            raise SourceError(f"{what}: the repository index gives no sha256 digest for it; "
                              "refusing an archive that cannot be verified")
        dest = self.root / "charts" / f"{_SAFE.sub('_', chart.name)}-{_SAFE.sub('_', version)}-{digest[:16]}.tgz"
        if dest.is_file():
            return ChartArchive(chart.name, version, digest, dest)
        urls = entry.get("urls") or []
        if not urls or not isinstance(urls[0], str):
            raise SourceError(f"{what}: the repository index gives no URL for it")
        url = _chart_url(source, urls[0], what)
        with locked(dest.with_suffix(".lock")):
            if not dest.is_file():
                data = self._get(source, url, MAX_CHART_BYTES, f"chart {chart.name} {version}")
                found = hashlib.sha256(data).hexdigest()
                if found != digest:
                    raise SourceError(f"{what}: the archive downloaded from {scrub_url(url)} has "
                                      f"sha256 {found}, not {digest} as the repository index "
                                      "says; refusing it (tampered or replaced)")
                write_atomically(dest, data)
        return ChartArchive(chart.name, version, digest, dest)

    # -- HTTP -------------------------------------------------------------------------

    def _get(self, source: Source, url: str, limit: int, what: str) -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": "fleetsync"})
        credentials = _credentials(source, self._environ)
        if credentials and same_https_origin(url, source.url):   # never after a redirect
            request.add_unredirected_header("Authorization", credentials)
        shown = scrub_url(url)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                data = response.read(limit + 1)
        except urllib.error.HTTPError as exc:
            raise _http_error(source, shown, what, exc) from exc
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientError(f"source {source.name}: cannot reach {shown}: {reason}") from exc
        if len(data) > limit:
            raise SourceError(f"source {source.name}: {what} at {shown} is larger than "
                              f"{limit} bytes")
        return data


def _check(source: Source) -> str:
    """The repository's base URL (ending in ``/``) once its transport is allowed."""
    url = source.url
    where = f"source {source.name}"
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "oci":
        raise SourceError(f"{where}: {url} is an OCI registry: its charts are read by "
                          "workers.fetch.ocicharts, not as an index.yaml")
    if scheme == "http":
        if source.auth != Auth():
            raise SourceError(f"{where}: credentials are never sent over plain http:// (even "
                              f"with insecure: true); use https:// for {scrub_url(url)}")
        if not source.insecure:
            raise SourceError(f"{where}: plain http:// is refused ({scrub_url(url)}): use "
                              "https://, or set insecure: true on the source to accept a "
                              "repository that anyone on the path can read and change")
    elif scheme != "https":
        raise SourceError(f"{where}: {scrub_url(url)} is not a Helm repository URL (https://)")
    return url if url.endswith("/") else url + "/"


def _chart_url(source: Source, given: str, what: str) -> str:
    """The absolute URL of a chart archive the index gives, once its transport is allowed."""
    url = urllib.parse.urljoin(_check(source), given.strip())
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    shown = scrub_url(url)
    if scheme == "https":
        return url
    if scheme == "http" and source.insecure and source.auth == Auth():
        return url
    why = ("plain http:// is accepted only from a source with insecure: true and no "
           "credentials" if scheme == "http" else "a chart is downloaded over https:// "
           "(or http:// with insecure: true) only")
    raise SourceError(f"{what}: the repository index gives the chart URL {shown}, refused: "
                      f"{why}")


def _credentials(source: Source, environ: Mapping[str, str]) -> str | None:
    login = login_for(source, environ)
    return None if login is None else login.basic()


def _http_error(source: Source, url: str, what: str, exc: urllib.error.HTTPError) -> Exception:
    where = f"source {source.name}"
    if exc.code in (401, 403):
        return SourceError(f"{where}: {url} refused the credentials (HTTP {exc.code}); check "
                           "auth.usernameEnv/passwordEnv on the workers")
    if exc.code == 429 or exc.code >= 500:
        return TransientError(f"{where}: {url} answered HTTP {exc.code} {exc.reason}")
    if exc.code == 404:
        return SourceError(f"{where}: no {what} at {url} (HTTP 404): is this a Helm repository?")
    return SourceError(f"{where}: {url} answered HTTP {exc.code} {exc.reason}")


def _entries(source: Source, path: Path) -> dict[str, Any]:
    where = f"source {source.name} index.yaml"
    text = path.read_bytes().decode("utf-8", errors="replace")
    docs = load_documents(text, where, max_chars=MAX_INDEX_BYTES)
    index = docs[0][1] if docs else None
    entries = index.get("entries") if isinstance(index, dict) else None
    if not isinstance(entries, dict):
        raise SourceError(f"source {source.name}: {scrub_url(source.url)}index.yaml is not a "
                          "Helm repository index (no entries)")
    return {str(k): v for k, v in entries.items() if isinstance(v, list)}


def _order(version: str) -> Any:
    parsed = parse_version(version)
    return (1, parsed.key()) if parsed else (0, version)


def write_atomically(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One download of an archive per host at a time (its other renders wait for it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
