"""The HTTP transport the HTTP sources share: Helm repositories and OCI registries.

One opener for both, with http and https only (no handler for ``file:``,
``ftp:`` or ``data:``, so a redirect cannot reach them) and redirects followed
within one scheme (never https -> http). Credentials are added with
``add_unredirected_header``, so urllib never carries them past a redirect; who
may receive them is decided by origin (scheme, host, port: ``origin``).
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class NoRedirectAcrossSchemes(urllib.request.HTTPRedirectHandler):
    """Follow redirects within one scheme only (never https -> http)."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if old.scheme != new.scheme:
            raise urllib.error.HTTPError(newurl, code, f"redirect from {old.scheme}:// to "
                                         f"{new.scheme}:// refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def http_only_opener() -> urllib.request.OpenerDirector:
    """http and https, redirects within one scheme; no file:, ftp: or data: handler."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(),
                    NoRedirectAcrossSchemes(), urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of ``url``, the port defaulted from the scheme."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    default = {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), parts.port or default


def same_https_origin(url: str, home: str) -> bool:
    """Credentials go to ``home``'s own scheme, host and port, over https only."""
    return origin(url)[0] == "https" and origin(url) == origin(home)
