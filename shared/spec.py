"""The fleet spec (fleet.yaml) as frozen data: sources, clusters, applications.

``load_fleet(path)`` parses and validates the file and returns a ``Fleet``; every
problem is reported as ``file:line: field.path: message`` in one ``SpecError``.
The model is plain data so that it can be passed between processes as JSON-able
names and rebuilt from the file by whoever needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Auth:
    ssh_key_file: str | None = None
    username_env: str | None = None
    password_env: str | None = None


@dataclass(frozen=True)
class Verify:
    """Whose commit signatures a source's revisions must carry.

    ``kind`` is ``ssh`` (``file`` is an allowed-signers file, as ``ssh-keygen -Y``
    reads it) or ``gpg`` (``file`` holds the trusted public keys, armored or not).
    """

    kind: str
    file: str


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    ref_kind: str            # "branch" | "tag" | "semver" | "commit"
    ref: str
    interval: float          # seconds
    auth: Auth = Auth()
    insecure: bool = False                 # plain http:// allowed (never with credentials)
    known_hosts: str | None = None         # ssh: the known_hosts file that pins the host key
    ssh_host_key_policy: str = "strict"    # or "accept-new": learn an unknown host's key once
    verify: Verify | None = None           # every revision must be signed by a trusted key


@dataclass(frozen=True)
class Cluster:
    name: str
    kubeconfig: str | None = None      # None: in-cluster, then $KUBECONFIG
    context: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    vars: Mapping[str, str] = field(default_factory=dict)
    interval: float = 60.0

    def variables(self) -> dict[str, str]:
        """The cluster's vars plus ``cluster_name``, which is always defined."""
        return {**self.vars, "cluster_name": self.name}


@dataclass(frozen=True)
class Selector:
    names: tuple[str, ...] | None = None
    match_labels: Mapping[str, str] | None = None

    def matches(self, cluster: Cluster) -> bool:
        if self.names is not None:
            return cluster.name in self.names
        if self.match_labels is not None:
            return all(cluster.labels.get(k) == v for k, v in self.match_labels.items())
        return False


@dataclass(frozen=True)
class Directory:
    """How a plain directory is read (an application path without a kustomization).

    By default (Flux-compatible) the directory's own manifest files are read and
    every immediate sub-directory holding a ``kustomization.yaml`` is built as a
    kustomization; other sub-directories are ignored. ``recurse`` (Argo
    CD-compatible) reads sub-directories too. ``include`` and ``exclude`` are
    globs over the path relative to the application directory (a glob without
    ``/`` matches the file name); ``include`` empty means ``*.yaml``, ``*.yml``
    and ``*.json``.
    """

    recurse: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Application:
    name: str
    source: str
    path: str
    clusters: Selector
    namespace: str | None = None
    prune: bool = True
    wait: bool = True                  # health counts in the phase (Ready = healthy)
    timeout: float = 120.0
    depends_on: tuple[str, ...] = ()
    suspend: bool = False
    adopt: bool = False
    allow_remote_bases: bool = False
    directory: Directory = Directory()
    allow_empty: bool = False          # render 0 objects and prune everything it managed
    force: bool = False                # delete and re-create on immutable-field refusals
    create_namespace: bool = False     # create ``namespace`` when it does not exist


@dataclass(frozen=True)
class Fleet:
    sources: Mapping[str, Source]
    clusters: Mapping[str, Cluster]
    applications: Mapping[str, Application]
    path: str = "fleet.yaml"
    warnings: tuple[str, ...] = ()

    def clusters_for(self, app: Application) -> list[Cluster]:
        return [c for c in self.clusters.values() if app.clusters.matches(c)]

    def applications_for(self, cluster: Cluster) -> list[Application]:
        return [a for a in self.applications.values() if a.clusters.matches(cluster)]

    def units(self) -> list[tuple[str, str]]:
        """Every sync unit as (application, cluster), in spec order."""
        return [(a.name, c.name) for a in self.applications.values() for c in self.clusters_for(a)]


def load_fleet(path: str) -> Fleet:
    """Parse and validate ``path``; raise ``SpecError`` listing every problem."""
    from shared.spec_loader import load  # kept apart: the model stays small

    return load(path)
