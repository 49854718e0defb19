"""OCI registry URLs, repository names, tags and digests: what is well-formed.

``oci://HOST[:PORT]/PATH`` names a registry and a repository path below it (for
Helm, the chart's name is appended: ``oci://ghcr.io/org/charts`` + ``web`` is the
repository ``org/charts/web``). The grammar is the distribution spec's:
repository components are lowercase alphanumerics joined by ``.``, ``_``, ``__``
or dashes; a tag is at most 128 word characters, dots and dashes, not starting
with either; a digest is ``sha256:`` and 64 hex digits (the only algorithm
fleetsync verifies). The spec's validation and the workers' fetch read the same
functions, so ``fleetsync validate`` refuses what the fetch would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                   r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?::[0-9]{1,5})?"
                   r"|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")


class OciUrlError(ValueError):
    """An ``oci://`` URL that is not well-formed; the message says what is wrong."""


@dataclass(frozen=True)
class OciUrl:
    host: str           # host[:port], as written (lowercased)
    path: str           # the repository path below the host; "" for the registry's root

    def repository(self, name: str = "") -> str:
        """The repository of ``name`` (a chart) below the path, or the path itself."""
        return "/".join(part for part in (self.path, name) if part)

    def __str__(self) -> str:
        return f"oci://{self.host}/{self.path}" if self.path else f"oci://{self.host}"


def parse_oci_url(url: str) -> OciUrl:
    """``oci://HOST[:PORT][/PATH]`` split and checked; ``OciUrlError`` says why not."""
    if not url.lower().startswith("oci://"):
        raise OciUrlError(f"{url!r} is not an oci:// URL")
    rest = url[len("oci://"):]
    if any(ch in rest for ch in "?#@ \t"):
        raise OciUrlError(f"{url!r}: an oci:// URL has no user, query or fragment (credentials "
                          "go in auth:, a tag or version in chart: / the source's ref)")
    host, _, path = rest.partition("/")
    path = path.rstrip("/")
    if not host:
        raise OciUrlError(f"{url!r}: no registry host (oci://HOST[:PORT]/PATH)")
    if not _HOST.fullmatch(host):
        raise OciUrlError(f"{url!r}: {host!r} is not a registry host[:port]")
    port = host.rpartition(":")[2] if ":" in host.rpartition("]")[2] else ""
    if port and not 0 < int(port) < 65536:
        raise OciUrlError(f"{url!r}: port {port} is out of range")
    if ":" in path:
        raise OciUrlError(f"{url!r}: a tag or digest does not go in the URL (set chart.version "
                          "or the source's tag/semver/digest)")
    if path and not REPOSITORY.fullmatch(path):
        raise OciUrlError(f"{url!r}: {path!r} is not a repository path (lowercase letters, "
                          "digits and . _ - separators, components joined by /)")
    return OciUrl(host.lower(), path)


def is_reference(text: str) -> bool:
    """A tag or a ``sha256:`` digest."""
    return bool(TAG.fullmatch(text) or DIGEST.fullmatch(text))
