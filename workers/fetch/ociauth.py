"""Registry authentication: challenges, the Bearer token exchange, and who may see a password.

A registry answers an anonymous request with ``401`` and a challenge:
``WWW-Authenticate: Basic realm=...`` (send the account with every request) or
``WWW-Authenticate: Bearer realm=URL,service=S,scope=SC`` (ask ``URL?service=S&scope=SC``
for a token, with the account as basic auth when there is one, then send
``Authorization: Bearer TOKEN``). ``parse_challenge`` reads the header;
``token_request`` decides whether the realm may be asked and with what.

The realm rule (where the account may go):

- the account is sent to the registry's own origin (scheme, host, port) and,
  for a token, to a realm on that same origin, over https only;
- a realm on another origin gets the account only when it is the documented
  token service of a well-known registry (``KNOWN_REALMS``: Docker Hub's
  ``registry-1.docker.io`` -> ``auth.docker.io``, GitLab's
  ``registry.gitlab.com`` -> ``gitlab.com``), over https;
- a realm on the origin the source's ``auth.tokenRealm`` names gets it too (a
  self-managed GitLab: registry and token service on two host names);
- any other realm is asked for an anonymous token (no account: nothing secret
  leaves), which is what a public repository needs; a private one then answers
  401 and the error says the realm was not trusted with the account;
- a realm over plain http is asked nothing from an https registry.

The account is read from the environment variables the source names and is
never logged or put in an error: errors name the variables, not the values.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Mapping

from shared.errors import SourceError
from shared.spec.model import Source
from workers.fetch.httptransport import origin

KNOWN_REALMS: dict[str, tuple[str, ...]] = {
    "registry-1.docker.io": ("auth.docker.io",),
    "docker.io": ("auth.docker.io",),
    "index.docker.io": ("auth.docker.io",),
    "registry.gitlab.com": ("gitlab.com",),
}
_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


@dataclass(frozen=True)
class Login:
    """An account read from the worker's environment; ``names`` is what errors show."""

    username: str = field(repr=False)
    password: str = field(repr=False)
    names: str          # "auth.usernameEnv REG_USER / auth.passwordEnv REG_PASS"

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str                     # "basic" or "bearer", lowercased
    params: dict[str, str]


def parse_challenge(header: str | None) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or None when there is none."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        params[match[1].lower()] = match[2] if match[2] is not None else (match[3] or "")
    return Challenge(scheme.lower(), params)


@dataclass(frozen=True)
class TokenRequest:
    url: str                        # the realm with service and scope
    send_login: bool                # the account goes along (the realm is trusted with it)


def realm_trusted(registry: str, realm: str, trusted: str | None = None) -> bool:
    """May ``realm`` receive the account of the registry at ``registry`` (a base URL)?
    ``trusted``: the origin the source's ``auth.tokenRealm`` names, trusted too."""
    reg, got = origin(registry), origin(realm)
    if got[0] != "https" or reg[0] != "https":
        return False
    return (got == reg or got[1] in KNOWN_REALMS.get(reg[1], ())
            or (trusted is not None and got == origin(trusted)))


def token_request(registry: str, challenge: Challenge, scope: str, login: Login | None,
                  trusted: str | None = None) -> TokenRequest | str:
    """What to ask the challenge's realm, or why it is not asked (a message)."""
    realm = challenge.params.get("realm", "")
    scheme = urllib.parse.urlsplit(realm).scheme.lower()
    if scheme not in ("https", "http") or not urllib.parse.urlsplit(realm).hostname:
        return f"the registry's token realm {realm!r} is not an http(s) URL"
    if scheme == "http" and (origin(registry)[0] == "https" or origin(realm) != origin(registry)):
        return f"the registry's token realm {realm} is plain http:// on another origin"
    query = {key: value for key, value in (("service", challenge.params.get("service", "")),
                                           ("scope", challenge.params.get("scope") or scope))
             if value}
    joiner = "&" if urllib.parse.urlsplit(realm).query else "?"
    url = realm + (joiner + urllib.parse.urlencode(query) if query else "")
    return TokenRequest(url, send_login=login is not None and realm_trusted(registry, realm,
                                                                              trusted))


def login_for(source: Source, environ: Mapping[str, str]) -> Login | None:
    """The account the source names (``auth: {usernameEnv, passwordEnv}``), read now."""
    auth = source.auth
    if not (auth.username_env and auth.password_env):
        return None
    user, password = environ.get(auth.username_env), environ.get(auth.password_env)
    if user is None or password is None:
        missing = auth.username_env if user is None else auth.password_env
        raise SourceError(f"source {source.name}: environment variable {missing} (auth) is not "
                          "set on this worker")
    return Login(user, password, f"auth.usernameEnv {auth.username_env} / auth.passwordEnv "
                                 f"{auth.password_env}")
