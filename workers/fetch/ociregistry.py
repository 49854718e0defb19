"""An OCI distribution client for the fetch stage: tags, manifests and blobs, verified.

``RegistryClient(host, ...)`` talks to one registry for one source: it lists a
repository's tags (following ``Link: <...>; rel="next"`` pages on the same
origin, at most ``MAX_TAGS`` tags and ``MAX_PAGE_BYTES`` a page), reads a
manifest by tag or digest (at most ``MAX_MANIFEST_BYTES``; its sha256 is
computed from the bytes read and must equal the digest asked for and the
``Docker-Content-Digest`` the registry sends), and streams a blob by digest into
a file (refused before a byte is read when the manifest's size or the
response's ``Content-Length`` is over the cap; read in chunks, hashed, stopped
as soon as it grows past its size, renamed into place only once it matched).

Why not the ``oras`` package (the ORAS project's Python SDK, 0.2.x): it sends
the account to whatever token realm a registry names (any origin, even plain
http), sets no timeout on its requests, follows tag pages without bound, has no
size cap on blobs or manifests, raises ``ValueError`` for a refused login and a
5xx alike (the fetch must tell a retry from a refusal), and keeps mutable
headers on the client. Wrapping it would replace most of what it does; this
module is the few requests the fetch needs on the opener the Helm repositories
use (``workers.fetch.httptransport``).

Transport (as the other sources): https; plain http only when the source says
``insecure: true`` (``plain_http``), never with an account. Authentication is
challenge-driven (``workers.fetch.ociauth``): the first request goes without,
a ``401`` with ``Basic`` or ``Bearer`` is answered once, and the account is sent
only to the registry's origin (and to the token realms ``ociauth`` trusts),
never after a redirect (blobs are often redirected to a storage host: those
requests go without it). The certificate is checked against the system's CAs
(``SSL_CERT_FILE`` on the worker adds a private CA).

Errors: unknown host, a timeout, a 5xx or 429 are ``TransientError``; the
account refused (the variables named, never the values), an unknown
repository, tag or digest, a digest mismatch and an over-size manifest or blob
are ``SourceError``, each naming the repository and reference.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from typing import Any

from shared.errors import SourceError, TransientError
from shared.logs import get_logger
from shared.ocirefs import DIGEST, REPOSITORY, is_reference
from workers.fetch import ociauth
from workers.fetch.httptransport import http_only_opener, origin

DEFAULT_TIMEOUT = 60.0
MAX_TAGS = 10_000
PAGE_SIZE = 1000
MAX_PAGES = 100
MAX_PAGE_BYTES = 4 * 1024 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_TOKEN_BYTES = 1024 * 1024
CHUNK = 1 << 16
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json"))

log = get_logger("fleetsync.oci")


@dataclass(frozen=True)
class Manifest:
    """A manifest as read, its digest computed from the bytes."""

    repository: str
    reference: str          # the tag or digest asked for
    digest: str             # "sha256:<hex>" of ``data``
    media_type: str
    data: bytes

    def json(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.data)
        except ValueError as exc:
            raise SourceError(f"manifest {self.repository}@{self.digest} is not JSON: {exc}") from exc
        if not isinstance(parsed, dict):
            raise SourceError(f"manifest {self.repository}@{self.digest} is not a JSON object")
        return parsed


class RegistryClient:
    """One registry, as one source (``who``, for errors) sees it."""

    def __init__(self, host: str, *, who: str, plain_http: bool = False,
                 login: ociauth.Login | None = None, timeout: float = DEFAULT_TIMEOUT,
                 trusted_realm: str | None = None) -> None:
        if plain_http and login is not None:
            raise SourceError(f"{who}: credentials are never sent over plain http:// (insecure: "
                              f"true); use the registry {host} over https")
        self.host, self.who, self.login, self.timeout = host, who, login, timeout
        self.trusted_realm = trusted_realm      # the source's auth.tokenRealm
        self.base = f"{'http' if plain_http else 'https'}://{host}"
        self._opener = http_only_opener()
        self._basic = False                     # the registry asked for basic auth
        self._tokens: dict[str, str] = {}       # scope -> Bearer token
        self._token_login: dict[str, bool] = {} # scope -> the account went to the realm for it
        self.page_size = PAGE_SIZE

    # -- the three reads ----------------------------------------------------------------

    def tags(self, repository: str, limit: int = MAX_TAGS) -> list[str]:
        """Every tag of ``repository``, page by page (at most ``limit``, else refused).

        The next page is the ``Link`` the registry sends (same origin only) or, when it
        sends none after a full page, ``?last=`` the page's last tag (the spec's other form)."""
        _check_repository(self.who, repository)
        first = f"{self.base}/v2/{repository}/tags/list?n={self.page_size}"
        url: str | None = first
        tags: dict[str, None] = {}
        for _ in range(MAX_PAGES):
            if url is None:
                return list(tags)
            with self._open(url, repository, f"the tags of {repository}") as resp:
                page = _read_capped(resp, MAX_PAGE_BYTES, f"{self.who}: the tag list of {repository}")
                link = resp.headers.get("Link")
            found = _page_tags(self.who, repository, page)
            new = [t for t in found if t not in tags]
            tags.update(dict.fromkeys(new))
            if len(tags) > limit:
                raise SourceError(f"{self.who}: {repository} has more than {limit} tags; pin an "
                                  "exact version or digest, or prune old tags")
            url = self._next_page(url, link)
            if url is None and new and len(found) >= self.page_size:
                url = f"{first}&last={urllib.parse.quote(found[-1])}"
        raise SourceError(f"{self.who}: the tag list of {repository} has more than {MAX_PAGES} pages")

    def manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest of ``repository`` at a tag or ``sha256:`` digest, its digest verified."""
        _check_repository(self.who, repository)
        if not is_reference(reference):
            raise SourceError(f"{self.who}: {reference!r} is neither a tag nor a sha256 digest")
        what = f"{repository}:{reference}" if ":" not in reference else f"{repository}@{reference}"
        with self._open(f"{self.base}/v2/{repository}/manifests/{reference}", repository, what,
                        accept=MANIFEST_TYPES) as resp:
            _check_length(self.who, what, resp, MAX_MANIFEST_BYTES)
            data = _read_capped(resp, MAX_MANIFEST_BYTES, f"{self.who}: manifest {what}")
            sent = (resp.headers.get("Docker-Content-Digest") or "").strip().lower()
            media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        for expected, said in ((reference, "asked for"), (sent, "the registry sent")):
            if DIGEST.fullmatch(expected) and expected != digest:
                raise SourceError(f"{self.who}: manifest {what} has digest {digest}, not "
                                  f"{expected} as {said}; refusing it (tampered or replaced)")
        return Manifest(repository, reference, digest, media_type, data)

    def blob(self, repository: str, digest: str, size: int, dest: Path, max_bytes: int) -> Path:
        """Stream the blob ``digest`` (``size`` bytes, at most ``max_bytes``) to ``dest``, verified."""
        _check_repository(self.who, repository)
        what = f"blob {digest} of {repository}"
        if not DIGEST.fullmatch(digest):
            raise SourceError(f"{self.who}: {what}: only sha256 digests are verified")
        if size < 0 or size > max_bytes:
            raise SourceError(f"{self.who}: {what} is {size} bytes, over the {max_bytes}-byte "
                              "limit; refused before reading it")
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._open(f"{self.base}/v2/{repository}/blobs/{digest}", repository, what) as resp:
            _check_length(self.who, what, resp, size)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    found = _copy_hashed(self.who, what, resp, out, size)
                if found != digest:
                    raise SourceError(f"{self.who}: {what} has digest {found}; refusing it "
                                      "(tampered or replaced)")
                os.chmod(tmp, 0o444)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return dest

    # -- requests and authentication ------------------------------------------------------

    def _open(self, url: str, repository: str, what: str, accept: str | None = None) -> HTTPResponse:
        scope = f"repository:{repository}:pull"
        for attempt in (1, 2):
            request = urllib.request.Request(url, headers={"User-Agent": "fleetsync"})
            if accept:
                request.add_header("Accept", accept)
            auth = self._authorization(scope)
            if auth:
                request.add_unredirected_header("Authorization", auth)
            sent = auth is not None and (auth.startswith("Basic") or self._token_login[scope])
            try:
                return self._opener.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1 and self._answer(exc, scope):
                    exc.close()
                    continue
                raise self._http_error(exc, what, sent=sent) from exc
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                raise TransientError(f"{self.who}: cannot reach the registry {self.host}: "
                                     f"{reason}") from exc
        raise AssertionError("unreachable")

    def _authorization(self, scope: str) -> str | None:
        if scope in self._tokens:
            return f"Bearer {self._tokens[scope]}"
        if self._basic and self.login is not None:
            return self.login.basic()
        return None

    def _answer(self, exc: urllib.error.HTTPError, scope: str) -> bool:
        """Meet a 401's challenge once; False when there is nothing more to try."""
        challenge = ociauth.parse_challenge(exc.headers.get("WWW-Authenticate"))
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if self.login is None or self._basic or not self.base.startswith("https://"):
                return False
            self._basic = True
            return True
        if challenge.scheme != "bearer":
            return False
        asked = ociauth.token_request(self.base, challenge, scope, self.login, self.trusted_realm)
        if isinstance(asked, str):
            raise SourceError(f"{self.who}: {asked}; refusing the token exchange")
        self._tokens[scope] = self._token(asked)
        self._token_login[scope] = asked.send_login
        return True

    def _token(self, asked: ociauth.TokenRequest) -> str:
        request = urllib.request.Request(asked.url, headers={"User-Agent": "fleetsync",
                                                              "Accept": "application/json"})
        if asked.send_login and self.login is not None:
            request.add_unredirected_header("Authorization", self.login.basic())
        realm = urllib.parse.urlsplit(asked.url)
        shown = f"{realm.scheme}://{realm.netloc}{realm.path}"
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                body = _read_capped(resp, MAX_TOKEN_BYTES, f"{self.who}: the token from {shown}")
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc, f"a token from {shown}", sent=asked.send_login) from exc
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
            raise TransientError(f"{self.who}: cannot reach the token service {shown}: "
                                 f"{getattr(exc, 'reason', exc)}") from exc
        try:
            parsed = json.loads(body)
            token = parsed.get("token") or parsed.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise SourceError(f"{self.who}: the token service {shown} answered no token")
        log.debug("registry token obtained", host=self.host, realm=shown,
                  with_account=asked.send_login)
        return token

    def _next_page(self, current: str, link: str | None) -> str | None:
        if not link:
            return None
        target = link.split(";", 1)[0].strip().strip("<>")
        if 'rel="next"' not in link.replace(" ", "") and "rel=next" not in link.replace(" ", ""):
            return None
        url = urllib.parse.urljoin(current, target)
        if origin(url) != origin(self.base):
            raise SourceError(f"{self.who}: the registry's next tag page {urllib.parse.urlsplit(url).netloc} "
                              f"is on another origin than {self.host}; refused")
        return url

    def _http_error(self, exc: urllib.error.HTTPError, what: str, *, sent: bool) -> Exception:
        code = _error_code(exc)
        where = f"{self.who}: the registry {self.host}"
        if exc.code in (401, 403):
            if self.login is None:
                return SourceError(f"{where} refused {what} without credentials (HTTP {exc.code}"
                                   f"{code}); set auth.usernameEnv/passwordEnv on the source")
            if not sent:
                return SourceError(f"{where} refused {what} (HTTP {exc.code}{code}): the account "
                                   f"({self.login.names}) was not sent, because its token "
                                   "service is on another origin: name it in auth.tokenRealm to "
                                   "trust it (see docs/sources.md)")
            return SourceError(f"{where} refused the credentials from {self.login.names} for "
                               f"{what} (HTTP {exc.code}{code}); check them on the workers")
        if exc.code == 429 or exc.code >= 500:
            retry = exc.headers.get("Retry-After", "")
            delay = min(float(retry), 300.0) if retry.isdigit() else None
            return TransientError(f"{where} answered HTTP {exc.code} {exc.reason} for {what}",
                                  delay=delay)
        if exc.code == 404:
            return SourceError(f"{where} has no {what} (HTTP 404{code})")
        return SourceError(f"{where} answered HTTP {exc.code} {exc.reason}{code} for {what}")


def _check_repository(who: str, repository: str) -> None:
    if not REPOSITORY.fullmatch(repository):
        raise SourceError(f"{who}: {repository!r} is not a repository name")


def _error_code(exc: urllib.error.HTTPError) -> str:
    """`` NAME_UNKNOWN``-style code of a distribution error body, or ""."""
    try:
        body = json.loads(exc.read(64 * 1024) or b"{}")
        code = body["errors"][0]["code"]
    except (ValueError, KeyError, IndexError, TypeError, OSError):
        return ""
    return f" {code}" if isinstance(code, str) and code.isupper() and len(code) < 40 else ""


def _check_length(who: str, what: str, resp: HTTPResponse, limit: int) -> None:
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > limit:
        raise SourceError(f"{who}: {what} is {length} bytes, over the {limit}-byte limit; "
                          "refused before reading it")


def _read_capped(resp: HTTPResponse, limit: int, what: str) -> bytes:
    data = resp.read(limit + 1)
    if len(data) > limit:
        raise SourceError(f"{what} is larger than {limit} bytes; refused")
    return data


def _copy_hashed(who: str, what: str, resp: HTTPResponse, out: Any, size: int) -> str:
    digest, total = hashlib.sha256(), 0
    while chunk := resp.read(CHUNK):
        total += len(chunk)
        if total > size:
            raise SourceError(f"{who}: {what} is larger than the {size} bytes its manifest "
                              "says; refused")
        digest.update(chunk)
        out.write(chunk)
    if total != size:
        raise SourceError(f"{who}: {what} ended after {total} of its {size} bytes")
    return "sha256:" + digest.hexdigest()


def _page_tags(who: str, repository: str, page: bytes) -> list[str]:
    try:
        tags = json.loads(page).get("tags") or []
    except (ValueError, AttributeError) as exc:
        raise SourceError(f"{who}: the tag list of {repository} is not JSON") from exc
    if not isinstance(tags, list):
        raise SourceError(f"{who}: the tag list of {repository} has no list of tags")
    return [t for t in tags if isinstance(t, str)]
