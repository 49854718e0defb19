"""One scan of an image policy: the repository's tags, the policy's choice, its digest.

    policy + environ -> account (auth env names, read now) -> RegistryClient
        -> tags (at most MAX_TAGS, paged, capped) -> policy.choose -> manifest digest

The registry is read with ``workers.fetch.ociregistry.RegistryClient``, the client
OCI sources use, so the transport rules are theirs: https with the system's CAs,
plain http only with ``insecure: true`` and never with an account, the account sent
only to the registry's origin (and the token realm ``auth.tokenRealm`` trusts). The
digest is that of the manifest the tag names as read (an image index for a
multi-platform image), which is what ``crane digest`` prints and what a
``image@sha256:...`` reference pins.

Errors name the policy and the repository: what a retry may cure (an unreachable
registry, a 5xx or 429) is ``TransientError``; an unknown repository, a refused
account (its environment variable names, never the values), too many tags, or no tag
the policy picks is ``SourceError``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

from shared.errors import SourceError
from shared.spec.images import ImagePolicy
from workers.fetch.ociauth import Login
from workers.fetch.ociregistry import DEFAULT_TIMEOUT, MAX_TAGS, RegistryClient
from workers.images.policy import choose, describe


@dataclass(frozen=True)
class ScanResult:
    """What one scan found: the tag the policy picked and the digest of its manifest."""

    policy: str
    repository: str
    tag: str
    digest: str         # "sha256:<hex>"
    why: str
    at: float           # epoch seconds of the scan
    considered: int
    ignored: int


def scan(policy: ImagePolicy, environ: Mapping[str, str], *,
         timeout: float = DEFAULT_TIMEOUT) -> ScanResult:
    """Read ``policy``'s repository and pick its tag; raise ``SourceError`` or
    ``TransientError`` naming the policy and repository."""
    client = registry_client(policy, environ, timeout=timeout)
    tags = client.tags(policy.path, limit=MAX_TAGS)
    choice = choose(policy, tags)
    if choice is None:
        raise SourceError(f"{_who(policy)}: none of the {len(tags)} tags of {policy.repository} "
                          f"matches {describe(policy)}")
    manifest = client.manifest(policy.path, choice.tag)
    return ScanResult(policy=policy.name, repository=policy.repository, tag=choice.tag,
                      digest=manifest.digest, why=choice.why, at=time.time(),
                      considered=choice.considered, ignored=choice.ignored)


def registry_client(policy: ImagePolicy, environ: Mapping[str, str], *,
                    timeout: float = DEFAULT_TIMEOUT) -> RegistryClient:
    """The client of ``policy``'s registry, with the account its ``auth`` names."""
    return RegistryClient(policy.host, who=_who(policy), plain_http=policy.insecure,
                          login=login(policy, environ), timeout=timeout,
                          trusted_realm=policy.auth.token_realm)


def login(policy: ImagePolicy, environ: Mapping[str, str]) -> Login | None:
    """The account ``auth: {usernameEnv, passwordEnv}`` names, read from ``environ`` now."""
    auth = policy.auth
    if not (auth.username_env and auth.password_env):
        return None
    user, password = environ.get(auth.username_env), environ.get(auth.password_env)
    if user is None or password is None:
        missing = auth.username_env if user is None else auth.password_env
        raise SourceError(f"{_who(policy)}: environment variable {missing} (auth) is not set "
                          "on this worker")
    return Login(user, password, f"auth.usernameEnv {auth.username_env} / auth.passwordEnv "
                                 f"{auth.password_env}")


def _who(policy: ImagePolicy) -> str:
    return f"image policy {policy.name}"
