"""Which Git transport a source URL asks for, decided the way git itself decides.

The spec loader (to warn while validating) and the workers' git layer (to refuse
before git runs) must agree on what a URL is, so the rule lives here once:

- ``<word>::<address>`` is a remote helper (``fd::``, ``ext::``, ...): git would
  run a program or read a descriptor of ours, so it is never a source;
- ``scheme://...`` is that scheme (``git+ssh``/``ssh+git`` are ``ssh``);
- ``host:path`` with no ``/`` before the first ``:`` is scp-like ssh;
- anything else (an absolute or relative path) is a local repository, as is
  ``file://``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

ALLOW_LOCAL_VAR = "FLEETSYNC_ALLOW_LOCAL_SOURCES"

_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_HELPER_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9+.-]*)::")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git")


@dataclass(frozen=True)
class Transport:
    """``kind`` is ``https``, ``http``, ``ssh``, ``file``, or what git would call it
    otherwise (``git``, ``ftp``, a remote helper's name): those are refused.
    ``helper`` is true for the ``<word>::`` form; ``host`` is set for network URLs."""

    kind: str
    host: str | None = None
    port: int | None = None
    helper: bool = False

    @property
    def local(self) -> bool:
        return self.kind == "file"


def transport(url: str) -> Transport:
    """The transport git would use for ``url``."""
    helper = _HELPER_RE.match(url)
    if helper and "://" not in url[:helper.end()]:
        return Transport(helper.group(1).lower(), helper=True)
    scheme = _SCHEME_RE.match(url)
    if scheme:
        kind = scheme.group(1).lower()
        kind = "ssh" if kind in _SSH_SCHEMES else kind
        if kind == "file":
            return Transport("file")
        try:
            parts = urlsplit(url)
            return Transport(kind, parts.hostname, parts.port)
        except ValueError:          # a port that is not a number
            return Transport(kind, None)
    colon, slash = url.find(":"), url.find("/")
    if colon > 0 and (slash < 0 or colon < slash):
        host = url[:colon].rsplit("@", 1)[-1].strip("[]")
        return Transport("ssh", host or None)
    return Transport("file")


def local_refused(url: str) -> str:
    """Why a local source is refused, naming the setting that allows it."""
    return (f"local source {url} is refused: local paths and file:// URLs are read only "
            f"when {ALLOW_LOCAL_VAR}=true is set on the workers")


def scrub_url(url: str) -> str:
    """``https://user:pw@host/x`` -> ``https://host/x``; other URLs are returned unchanged."""
    return _USERINFO_RE.sub(r"\g<scheme>", url)
