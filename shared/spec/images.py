"""Image update automation in the fleet spec: image policies and what a Git source commits.

``images:`` is a list of ``ImagePolicy``: which tag of a registry repository is the
latest by a policy (semver range, numerical or alphabetical order over an optional
tag filter). ``imageUpdates:`` on a Git source (``ImageUpdates``) says where in that
repository setter markers are looked for and how the one commit per scan is made
and pushed. Markers are Flux's: ``# {"$imagepolicy": "NAMESPACE:NAME"}`` (and the
``:tag`` / ``:name`` forms); NAME is a policy's ``name`` and NAMESPACE, when the
policy sets ``namespace``, must equal it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.spec.auth import Auth


@dataclass(frozen=True)
class TagFilter:
    """``filterTags``: only tags matching ``pattern`` (a Python regex, searched) count,
    and ``extract`` (``$group`` / ``${group}`` references, Flux's form) is what the
    policy orders; empty ``extract``: the whole tag."""

    pattern: str
    extract: str = ""


@dataclass(frozen=True)
class ImagePolicy:
    """One ``images:`` entry.

    ``kind`` is ``semver`` (``value`` is the range, the rules of Git semver refs),
    ``numerical`` or ``alphabetical`` (``value`` is ``asc`` or ``desc``: ``asc`` picks
    the highest). ``repository`` is ``HOST[:PORT]/PATH`` without scheme, tag or digest.
    """

    name: str
    repository: str
    kind: str                       # "semver" | "numerical" | "alphabetical"
    value: str                      # the range, or "asc" | "desc"
    namespace: str | None = None    # markers "NAMESPACE:NAME" must name it when set
    filter: TagFilter | None = None
    interval: float = 300.0         # seconds between two reads of the tag list
    auth: Auth = Auth()
    insecure: bool = False          # plain http to the registry (never with credentials)
    line: int = 0                   # where in the fleet file it is (for errors)

    @property
    def host(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def path(self) -> str:
        return self.repository.split("/", 1)[1]

    def named_by(self, reference: str) -> bool:
        """Whether a marker's ``NAMESPACE:NAME`` (or bare ``NAME``) is this policy."""
        namespace, _, name = reference.rpartition(":")
        if name != self.name:
            return False
        return self.namespace is None or namespace == self.namespace


@dataclass(frozen=True)
class Signing:
    """How image-update commits are signed: ``kind`` ``ssh`` (``key_file`` a private
    key, as ``git -c gpg.format=ssh -c user.signingkey=FILE``) or ``gpg`` (``key_file``
    an armored secret key, imported into a keyring of its own for each commit)."""

    kind: str
    key_file: str


@dataclass(frozen=True)
class ImageUpdates:
    """``imageUpdates:`` on a Git source: markers below ``path`` are set to the
    policies' choices, all of one scan in one commit, pushed to ``push_branch`` (None:
    the source's own branch) with ``write_auth`` (an SSH key file, or a user and
    token by environment variable names); never a force push."""

    path: str = "."
    author_name: str = "fleetsync"
    author_email: str = "fleetsync@localhost"
    message_template: str = ""      # "" : the default (shared.spec.images.DEFAULT_MESSAGE)
    signing: Signing | None = None
    push_branch: str | None = None
    write_auth: Auth = Auth()
    interval: float = 300.0         # seconds between two scans of this repository
    line: int = 0


DEFAULT_MESSAGE = "Update images\n\n{changes}"
"""``{changes}`` is one line per field changed, ``- FILE: OLD -> NEW (policy NAME)``;
``{count}`` the number of changes; ``{source}`` the source's name."""
