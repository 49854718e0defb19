"""The fleet spec (fleet.yaml) as frozen data: sources, clusters, applications, notifications.

``shared.spec.load.load_fleet(path)`` parses and validates the file and returns a
``Fleet``; every problem is reported as ``file:line: field.path: message`` in one
``SpecError``.
The model is plain data so that it can be passed between processes as JSON-able
names and rebuilt from the file by whoever needs it.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from shared.spec.auth import Auth
from shared.spec.images import ImagePolicy, ImageUpdates

__all__ = ["Auth", "ImagePolicy", "ImageUpdates"]   # re-exported: the model's own parts


@dataclass(frozen=True)
class Verify:
    """Whose commit signatures a source's revisions must carry.

    ``kind`` is ``ssh`` (``file`` is an allowed-signers file, as ``ssh-keygen -Y``
    reads it), ``gpg`` (``file`` holds the trusted public keys, armored or not) or,
    on an OCI artifact source, ``cosign`` (``file`` is the PEM public key whose cosign
    signature each digest must carry).
    """

    kind: str
    file: str


HELM_REPOSITORY = "helm"      # the ref_kind of a source that is a Helm repository
DEFAULT_BRANCH = "default"    # the ref_kind of ``defaultBranch: true``: the remote's HEAD branch
DEFAULT_BRANCH_KEY = "defaultBranch"


@dataclass(frozen=True)
class OciArtifact:
    """What of an OCI artifact (``oci:`` source) is a tree: the layer of ``media_type``
    (empty: the first layer), extracted (``operation``: only ``extract``)."""

    media_type: str = ""
    operation: str = "extract"


@dataclass(frozen=True)
class Webhook:
    """How pushes to a source are announced: the environment variable of ``fleetsync
    server`` that holds the webhook secret (GitHub's HMAC key, GitLab's token)."""

    secret_env: str


@dataclass(frozen=True)
class Source:
    name: str
    url: str
    ref_kind: str            # "branch" | "tag" | "semver" | "commit"; "helm": url is a Helm repository
    ref: str                 # "default" (defaultBranch: true): "", the branch is the remote's HEAD
    interval: float          # seconds
    auth: Auth = Auth()
    insecure: bool = False                 # plain http:// allowed (never with credentials)
    known_hosts: str | None = None         # ssh: the known_hosts file that pins the host key
    ssh_host_key_policy: str = "strict"    # or "accept-new": learn an unknown host's key once
    verify: Verify | None = None           # every revision must be signed by a trusted key
    webhook: Webhook | None = None         # fleetsync server accepts push webhooks for it
    max_size: int | None = None            # bytes its mirror may take on a worker host
    oci: OciArtifact | None = None         # an OCI artifact (url oci://; ref_kind tag|semver|digest)
    image_updates: ImageUpdates | None = None  # Git: image policies' choices committed to it

    @property
    def helm_repository(self) -> bool:
        """A Helm chart repository (``helmRepository:``, https:// or oci://), not Git."""
        return self.ref_kind == HELM_REPOSITORY

    @property
    def oci_artifact(self) -> bool:
        """An OCI artifact of manifests (``oci:``): its revision is a manifest digest."""
        return self.oci is not None


@dataclass(frozen=True)
class Cluster:
    name: str
    kubeconfig: str | None = None      # None: in-cluster, then $KUBECONFIG
    context: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    vars: Mapping[str, str] = field(default_factory=dict)
    interval: float = 60.0
    service_account: str | None = None  # "namespace/name": applications' default identity

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
class Chart:
    """A chart of a Helm repository source: its name and an exact version or a semver range
    (the highest version of the repository's index in range wins)."""

    name: str
    version: str


@dataclass(frozen=True)
class ClusterValues:
    """Helm values for the clusters that ``clusters`` selects, merged over the others."""

    clusters: Selector
    values: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Helm:
    """How a chart is rendered: release name (default: the application's name) and values.

    Values are deep-merged in this order, later wins: the chart's ``values.yaml``,
    ``values_files`` (in order; Git sources only), ``values``, then every
    ``values_by_cluster`` entry whose selector matches the cluster, in order. Mappings
    merge key by key; anything else (lists too) is replaced. ``${var}`` is substituted
    with the cluster's variables in the merged values.
    """

    release_name: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    values_files: tuple[str, ...] = ()
    values_by_cluster: tuple[ClusterValues, ...] = ()


@dataclass(frozen=True)
class Wave:
    """One wave of a rollout: the clusters it selects, how many of them apply a new
    revision at once (a count, or ``"25%"`` of the wave; None: all), and how long to
    wait once they are all Ready before the next wave starts."""

    clusters: Selector
    max_parallel: str | None = None
    pause: float = 0.0


@dataclass(frozen=True)
class Rollout:
    """``rollout:`` of an application (``shared/rollout.py`` holds the rules)."""

    waves: tuple[Wave, ...]
    urgent_on_revert: bool = False     # a revert goes to every cluster at once


@dataclass(frozen=True)
class IgnoreRule:
    """Fields fleetsync leaves to someone else: neither drift nor applied.

    ``json_pointers`` (``/spec/replicas``) of the objects the rule selects (``kind``
    and optionally ``group`` and ``name``; no kind: every object); ``managers``:
    every field a field manager owns (``kube-controller-manager``'s, an HPA's)."""

    group: str | None = None
    kind: str | None = None
    name: str | None = None
    json_pointers: tuple[str, ...] = ()
    managers: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthCheck:
    """A Flux-style CEL health check of one kind (``healthCheckExprs``): expressions over
    the object; ``where`` is its ``file:line``, for messages."""

    api_version: str
    kind: str
    current: str
    in_progress: str = ""
    failed: str = ""
    where: str = ""


@dataclass(frozen=True)
class HealthSettings:
    """The fleet's health: CEL checks, Argo CD-style Lua scripts (a directory and inline
    scripts by ``group/Kind``), and how built-in readings treat kinds without status,
    LoadBalancer Services and Ingresses (see ``shared/spec/health.py``)."""

    checks: tuple[HealthCheck, ...] = ()
    lua_dir: str = ""
    lua_scripts: tuple[tuple[str, str], ...] = ()
    statusless_kinds: tuple[str, ...] = ()
    load_balancer_address: bool = True
    ingress_address: bool = False


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
    chart: Chart | None = None         # a chart of a Helm repository source (path unused)
    helm: Helm = Helm()                # release name and values of a chart
    allow_helm_charts: bool = False    # kustomize helmCharts: rendered with helm
    service_account: str | None = None  # "namespace/name" impersonated for every request
    allowed_namespaces: tuple[str, ...] = ()   # empty: any (but fleetsync-system)
    allowed_kinds: tuple[str, ...] = ()        # "Kind" or "group/Kind"; empty: any
    denied_kinds: tuple[str, ...] = ()
    prune_adopted: bool = False        # prune: adopted: objects it adopted are pruned too
    on_removal: str = "orphan"         # when it leaves the spec: "orphan" or "prune" its objects
    drift: str = "correct"             # or "detect": report drift (Drifted), write nothing
    ignore_differences: tuple[IgnoreRule, ...] = ()
    rollout: Rollout | None = None     # waves: a new revision goes cluster group by group
    health_checks: tuple[HealthCheck, ...] = ()   # CEL, before the fleet's checks
    statusless_kinds: tuple[str, ...] = ()        # more custom kinds that have no status
    suspended_is: str = "Suspended"    # or "Progressing": a paused object holds Ready back


@dataclass(frozen=True)
class Route:
    """Where notifications go: one ``notifications.routes`` entry.

    ``provider`` is ``slack`` (a Slack-compatible incoming webhook, its URL in
    ``url_env``), ``webhook`` (generic JSON, ``url`` or ``url_env``, optional
    bearer token) or ``github`` (commit statuses: ``api``, ``repository`` and
    ``token_env``; ``context`` ``application`` sets ``fleetsync/<app>`` per
    application, ``fleet`` one ``fleetsync`` status summarising them all).
    ``gitlab`` (previews only: ``api``, the project in ``repository``,
    ``token_env``). Secrets are environment variable names, never values.
    """

    name: str
    provider: str                                # "slack" | "webhook" | "github" | "gitlab"
    url: str | None = None
    url_env: str | None = None
    token_env: str | None = None
    api: str = "https://api.github.com"
    repository: str = ""                         # github: owner/repo; gitlab: the project
    context: str = "application"                 # github: "application" | "fleet"
    applications: tuple[str, ...] | None = None  # None: every application
    events: tuple[str, ...] = ("rollup", "failure")
    max_per_minute: int = 20

    def covers(self, app: str) -> bool:
        return self.applications is None or app in self.applications


@dataclass(frozen=True)
class Notifications:
    """The ``notifications`` section: routes and how long the notifier waits."""

    routes: tuple[Route, ...] = ()
    settle_timeout: float = 600.0    # a revision not settled by then is reported as it stands
    debounce: float = 10.0           # a unit's change into or out of Failed/Degraded must hold this long


@dataclass(frozen=True)
class Window:
    """A change window (``windows:`` entry): from each fire time of ``schedule`` (a
    five-field cron, read in ``time_zone``) for ``duration`` seconds. ``allow``: changes
    only while one is open; ``deny``: none while it is open. ``applications`` selects by
    name, ``clusters`` as an application does; None selects every one. The rules are in
    ``shared/spec/window_rules.py``."""

    name: str
    kind: str                              # "allow" | "deny"
    schedule: str
    duration: float                        # seconds, at most 31 days
    time_zone: str = "UTC"
    applications: Selector | None = None   # names only: applications carry no labels
    clusters: Selector | None = None
    manual_sync: bool = False              # a manual sync may pass while it holds a unit
    drift: str = "detect"                  # while it holds a unit: "correct" or "detect"

    def selects(self, app: str, cluster: Cluster) -> bool:
        apps = self.applications
        return ((apps is None or app in (apps.names or ()))
                and (self.clusters is None or self.clusters.matches(cluster)))


@dataclass(frozen=True)
class Fleet:
    sources: Mapping[str, Source]
    clusters: Mapping[str, Cluster]
    applications: Mapping[str, Application]
    path: str = "fleet.yaml"
    warnings: tuple[str, ...] = ()
    notifications: Notifications = Notifications()
    health: HealthSettings = HealthSettings()
    windows: tuple[Window, ...] = ()
    images: tuple[ImagePolicy, ...] = ()   # image policies (``images:``), in spec order

    def clusters_for(self, app: Application) -> list[Cluster]:
        return [c for c in self.clusters.values() if app.clusters.matches(c)]

    def applications_for(self, cluster: Cluster) -> list[Application]:
        return [a for a in self.applications.values() if a.clusters.matches(cluster)]

    def shares_builds(self, app: Application) -> bool:
        """Whether a raw build of ``app`` (the expensive step of a render, shared in the
        render cache) may serve another unit: the application targets more than one
        cluster, or another one renders the same path or chart of the same source. When
        it may not, storing it and taking its build lock would only cost Redis work.
        Decided once per application and spec."""
        known = self._shared.get(app.name)
        if known is None:
            known = self._shared[app.name] = self._shares_builds(app)
        return known

    def _shares_builds(self, app: Application) -> bool:
        if self._paths.get(_build_of(app), 0) > 1:
            return True
        names = app.clusters.names
        if names is not None:
            return len({n for n in names if n in self.clusters}) > 1
        return sum(1 for c in self.clusters.values() if app.clusters.matches(c)) > 1

    @functools.cached_property
    def _shared(self) -> dict[str, bool]:
        return {}

    @functools.cached_property
    def _paths(self) -> dict[tuple[str, str], int]:
        return dict(Counter(_build_of(a) for a in self.applications.values()))

    def units(self) -> list[tuple[str, str]]:
        """Every sync unit as (application, cluster), in spec order."""
        return [(a.name, c.name) for a in self.applications.values() for c in self.clusters_for(a)]


def _build_of(app: Application) -> tuple[str, str]:
    """What a raw build of ``app`` is made from: its source and its path or chart."""
    return app.source, repr(app.chart) if app.chart is not None else app.path

