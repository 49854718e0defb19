"""The three stages of a sync, as domain functions: fetch, render, apply.

Each takes a ``Context`` and names and does one thing; none of them knows about
runs, locks or retries (``workers/run/runner.py`` does). ``fetch`` turns a source
into a revision, ``render`` turns (app, cluster, revision) into a render key in
the cache, ``apply_objects`` makes a cluster hold a render's objects.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from shared.state import keys
from shared import metrics
from shared.errors import FleetsyncError, PermanentError, SourceError
from shared.logs import get_logger
from shared.protocol import Phase
from shared.state.redisconn import RedisError
from shared.spec import health as spec_health
from shared.spec.model import Application, Cluster, Fleet, Source
from workers.context import Context
from workers.render.helm import Helm, read_capabilities
from workers.fetch.helmrepo import ChartRepositories
from workers.fetch.ociartifact import commit_fields as artifact_commit
from workers.fetch.ocicharts import OciCharts, is_oci
from workers.render.engine import Rendered, render_unit
from workers.render.sops import Sops

log = get_logger("fleetsync.stages")


def unit_spec_hash(fleet: Fleet, app: Application, cluster: Cluster) -> str:
    """What, besides the revision, decides the outcome of a sync: the app, cluster and source spec.
    (The JSON of ``[app, cluster, source]``, each part's text kept per spec object: a
    pass over a cluster's units makes the cluster's and the source's once.)"""
    parts = (_spec_json(app), _spec_json(cluster), _spec_json(fleet.sources[app.source]))
    return hashlib.sha256(f"[{', '.join(parts)}]".encode()).hexdigest()[:16]


_SPEC_JSON: "OrderedDict[int, tuple[object, str]]" = OrderedDict()
SPEC_JSON_KEPT = 512


def _spec_json(part: Application | Cluster | Source) -> str:
    """``json.dumps(asdict(part), sort_keys=True)``, remembered for this very object (the
    spec's dataclasses are frozen; the entry holds the object, so its id is not reused)."""
    hit = _SPEC_JSON.get(id(part))
    if hit is not None and hit[0] is part:
        return hit[1]
    text = json.dumps(asdict(part), sort_keys=True, default=str)
    _SPEC_JSON[id(part)] = (part, text)
    while len(_SPEC_JSON) > SPEC_JSON_KEPT:
        _SPEC_JSON.popitem(last=False)
    return text


def resolve(fleet: Fleet, app_name: str, cluster_name: str) -> tuple[Application, Cluster]:
    app = fleet.applications.get(app_name)
    if app is None:
        raise PermanentError(f"no application named {app_name!r} in {fleet.path}")
    cluster = fleet.clusters.get(cluster_name)
    if cluster is None:
        raise PermanentError(f"no cluster named {cluster_name!r} in {fleet.path}")
    if not app.clusters.matches(cluster):
        raise PermanentError(f"application {app_name!r} does not target cluster {cluster_name!r}")
    return app, cluster


@dataclass(frozen=True)
class Unit:
    """A sync unit as one reading of the fleet spec gives it: a stage resolves it once
    and hands it on, rather than reading the spec again for each thing it needs."""

    fleet: Fleet
    app: Application
    cluster: Cluster

    def spec_key(self, revision: str) -> str:
        """``revision:spec hash``: what a permanent failure is remembered by, and what
        an applied run records."""
        return f"{revision}:{unit_spec_hash(self.fleet, self.app, self.cluster)}"


def resolve_unit(ctx: Context, app_name: str, cluster_name: str) -> Unit:
    """The unit from the current spec; ``PermanentError`` when the spec has no such unit."""
    fleet = ctx.fleet()
    return Unit(fleet, *resolve(fleet, app_name, cluster_name))


def unit_in_spec(ctx: Context, app_name: str, cluster_name: str) -> Unit | None:
    """The unit, or None when the current spec no longer has it (a spec that cannot be
    read raises, as ``ctx.fleet()`` does)."""
    try:
        return resolve_unit(ctx, app_name, cluster_name)
    except PermanentError:
        return None


# --- fetch ---------------------------------------------------------------------

def fetch(ctx: Context, source_name: str) -> str:
    """Fetch ``source_name`` now and record its revision fleet-wide."""
    fleet = ctx.fleet()
    source = fleet.sources.get(source_name)
    if source is None:
        raise PermanentError(f"no source named {source_name!r} in {fleet.path}")
    started = time.monotonic()
    ctx.status.fetch_begins(source_name)        # a push from now on asks for another fetch
    try:
        revision = _fetch_revision(ctx, fleet, source)
    except PermanentError as exc:       # refused: the last good revision stays, with why
        ctx.status.set_source_error(source_name, str(exc))
        raise
    metrics.source_fetch_duration.labels(source_name).observe(time.monotonic() - started)
    ctx.status.set_source_revision(source_name, revision, time.time(),
                                   commit=_mirror_commit(ctx, source, revision),
                                   ref="" if source.helm_repository or source.oci_artifact
                                   else ctx.sources.resolved_ref(source))
    log.info("source fetched", source=source_name, revision=revision,
             seconds=round(time.monotonic() - started, 3))
    return revision


def _fetch_revision(ctx: Context, fleet: Fleet, source: Source) -> str:
    """A Git source's commit, the sha256 of a Helm repository's index, the manifest
    digest of the chart an OCI registry source's applications ask for, or the hex of
    an OCI artifact's manifest digest (verified and extracted on this host)."""
    if source.oci_artifact:
        return ctx.artifacts.fetch(source)
    if is_oci(source):
        return oci_charts(ctx).fetch(source, [a.chart for a in fleet.applications.values()
                                              if a.source == source.name and a.chart])
    return charts(ctx).fetch(source) if source.helm_repository else ctx.sources.fetch(source)


def charts(ctx: Context) -> ChartRepositories:
    """This host's Helm repository indexes and chart archives (``workers.fetch.helmrepo``)."""
    return ChartRepositories(ctx.settings.cache_dir / "helm")


def oci_charts(ctx: Context) -> OciCharts:
    """This host's OCI chart resolutions and archives (``workers.fetch.ocicharts``)."""
    return OciCharts(ctx.settings.cache_dir / "helm" / "oci")


def clusters_using(fleet: Fleet, source_name: str) -> list[str]:
    """Clusters with at least one unsuspended application of ``source_name``."""
    return [c.name for c in fleet.clusters.values()
            if any(a.source == source_name and not a.suspend for a in fleet.applications_for(c))]


def current_revision(ctx: Context, source_name: str) -> str:
    """The source's revision, fetched at most once per interval fleet-wide."""
    source = ctx.fleet().sources[source_name]
    known = ctx.status.source_revision(source_name)
    if known and time.time() - known[1] < source.interval:
        return known[0]
    if known and not ctx.status.claim_fetch(source_name, source.interval):
        return known[0]            # another worker is fetching it right now
    return fetch(ctx, source_name)


# --- render --------------------------------------------------------------------

def render(ctx: Context, unit: Unit, revision: str) -> Rendered:
    """Render one sync unit at ``revision``; the objects go to the cache under the key."""
    fleet, app, cluster = unit.fleet, unit.app, unit.cluster
    source = fleet.sources[app.source]
    started = time.monotonic()
    helm = Helm.from_settings(ctx.settings,
                              read=lambda: read_capabilities(ctx.redis, cluster.name))
    shared = fleet.shares_builds(app)
    if source.helm_repository and app.chart is not None:
        done = render_unit(app, cluster, None, ctx.cache, revision, source.name, helm=helm,
                           shared=shared,
                           archive=(oci_charts(ctx) if is_oci(source) else charts(ctx))
                           .chart(source, app.chart, revision))
    else:
        done = render_unit(app, cluster, _checkout(ctx, source, revision), ctx.cache, revision,
                           source.name, sops=Sops.from_settings(ctx.settings), helm=helm,
                           shared=shared)
    metrics.reconcile_duration.labels("render").observe(time.monotonic() - started)
    ctx.cache.remember(keys.unit_id(app.name, cluster.name), revision,
                       unit_spec_hash(fleet, app, cluster), done.key)
    unused = unused_checks(app, done.objects)
    for warning in done.warnings:
        log.warning("render skipped a document", detail=warning)
    for warning in unused:
        log.warning("health check never used", detail=warning)
    return replace(done, warnings=done.warnings + unused) if unused else done


def unused_checks(app: Application, objects: list[dict]) -> tuple[str, ...]:
    """Warnings for the application's health checks of kinds it does not render."""
    if not app.health_checks:
        return ()
    rendered = {(str(o.get("apiVersion", "")).rpartition("/")[0], str(o.get("kind", "")))
                for o in objects}
    return tuple(spec_health.unused_checks(app.health_checks, rendered,
                                           f"application {app.name!r}"))


def _checkout(ctx: Context, source: Source, revision: str) -> Path:
    if source.oci_artifact:
        return ctx.artifacts.checkout(source, revision)
    try:
        return ctx.sources.checkout(source, revision)
    except SourceError:
        ctx.sources.fetch(source)          # this host's mirror may not have it yet
        return ctx.sources.checkout(source, revision)


# --- apply ---------------------------------------------------------------------

def unreachable(exc: BaseException) -> str:
    """Why the cluster did not answer at all (``connection refused``, ``timed out after
    5 s``), or "": the apply adapter's ``Unavailable.unreachable``."""
    return str(getattr(exc, "unreachable", "") or "")


def render_mismatch(meta: dict[str, Any], app: Application, cluster: Cluster,
                    revision: str) -> str:
    """Why a render entry is not ``app`` on ``cluster`` at ``revision``, or ""."""
    from workers.render.engine import mismatch

    return mismatch(meta, app, cluster, revision)


def recorded_source(ctx: Context, source_name: str) -> tuple[str, str]:
    """The source's last good revision fleet-wide ("" when never), and why its latest
    fetch was refused ("" when it was not). The revision's commit, recorded beside it,
    is remembered for ``commit_fields`` (the same read: no round trip of its own)."""
    record = ctx.status.source_record(source_name)
    if record.commit_revision and record.commit:
        _remember_commit(record.commit_revision, record.commit)
    return record.revision, record.error


# --- who committed a revision (history entries) ------------------------------------

_COMMITS: "OrderedDict[str, dict[str, str]]" = OrderedDict()   # revision -> COMMIT_FIELDS
COMMITS_KEPT = 256          # revisions remembered per process (a commit never changes)


def commit_fields(ctx: Context, app_name: str, revision: str,
                  fleet: Fleet | None = None) -> dict[str, str]:
    """Author, date and subject of ``revision``'s commit as ``HistoryEntry`` fields, or
    none when they cannot be known. Per revision and process: first from what this
    process already read (the source record of the apply stage), else from the local
    mirror (render workers have it), else from the source record in Redis (a pull
    worker), once; never an error of the run."""
    if not revision:
        return {}
    found = _COMMITS.get(revision)
    if found is None:
        try:
            found = _commit_of(ctx, app_name, revision, fleet or ctx.fleet())
        except (FleetsyncError, RedisError, OSError, ValueError, KeyError) as exc:
            log.debug("commit of the revision unknown", revision=revision, error=str(exc))
            return {}
        _remember_commit(revision, found)
    return dict(found)


def _commit_of(ctx: Context, app_name: str, revision: str, fleet: Fleet) -> dict[str, str]:
    source = fleet.sources[fleet.applications[app_name].source]
    if source.oci_artifact or ctx.sources.mirror_path(source).is_dir():
        found = _mirror_commit(ctx, source, revision)
        if found:
            return found
    record = ctx.status.source_record(source.name)
    return record.commit if record.commit_revision == revision else {}


def _mirror_commit(ctx: Context, source: Source, revision: str) -> dict[str, str]:
    """The commit fields of ``revision`` from this host's mirror ({} when it cannot tell)."""
    if revision in _COMMITS:
        return _COMMITS[revision]
    if source.oci_artifact:
        return _artifact_fields(ctx, source, revision)
    try:
        info = ctx.sources.revision_info(source, revision)
    except (FleetsyncError, OSError, ValueError) as exc:
        log.debug("commit not read from the mirror", source=source.name, error=str(exc))
        return {}
    found = {"author": info["author"], "author_email": info["author_email"],
             "committed_at": info["committed_at"], "subject": info["message"]}
    _remember_commit(revision, found)
    return found


def _artifact_fields(ctx: Context, source: Source, revision: str) -> dict[str, str]:
    """An artifact's tag, digest and annotations, as history shows them (``{}``: unknown)."""
    try:
        found = artifact_commit(ctx.artifacts.revision_info(source, revision))
    except (FleetsyncError, OSError) as exc:
        log.debug("artifact not read from this host", source=source.name, error=str(exc))
        return {}
    _remember_commit(revision, found)
    return found


def _remember_commit(revision: str, commit: dict[str, str]) -> None:
    _COMMITS[revision] = commit
    _COMMITS.move_to_end(revision)
    while len(_COMMITS) > COMMITS_KEPT:
        _COMMITS.popitem(last=False)


def waiting_for(ctx: Context, fleet: Fleet, app: Application, cluster: Cluster) -> list[str]:
    """The dependencies of ``app`` on ``cluster`` that are not Ready yet."""
    return [dep for dep in app.depends_on
            if dep in fleet.applications and fleet.applications[dep].clusters.matches(cluster)
            and ctx.status.get_status(dep, cluster.name).phase != Phase.READY.value]


def health_rules(fleet: Fleet, app: Application) -> Any:
    """The ``HealthRules`` ``app`` is judged by: its custom checks and the fleet's, compiled
    once per spec and process (``workers/apply/checks.py``)."""
    from workers.apply.checks import rules_for

    return rules_for(fleet.health, app)


def apply_objects(ctx: Context, app: Application, cluster: Cluster, objects: list[dict],
                  revision: str, token: int, fence: Any = None, correct: bool = True,
                  rules: Any = None) -> Any:
    """The apply engine on this unit's cluster; an ``ApplyResult``. ``fence`` is asked
    before each write (it raises when the unit's lock is no longer ours)."""
    from workers.apply.engine import apply_unit
    from workers.apply.execute import OPEN

    started = time.monotonic()
    _record_capabilities(ctx, cluster)
    result = apply_unit(ctx.kube(cluster), app=app, objects=objects, revision=revision,
                        token=token, identity=identity_of(app, cluster), correct_drift=correct,
                        fence=OPEN if fence is None else fence,
                        rules=rules if rules is not None else health_rules(ctx.fleet(), app))
    metrics.reconcile_duration.labels("apply").observe(time.monotonic() - started)
    return result


def recheck_health(ctx: Context, unit: Unit, ref_ids: list[str]) -> tuple[Any, ...]:
    """The health follow-up's reads: only ``ref_ids``, and only those the unit owns; the
    ones that still block, as ``(object, verdict, message [rule])``."""
    from workers.apply.engine import recheck_unit
    from workers.apply.health import problems

    kube = ctx.kube(unit.cluster).session(identity_of(unit.app, unit.cluster))
    return problems(recheck_unit(kube, unit.app.name, ref_ids,
                                 rules=health_rules(unit.fleet, unit.app)))


def remove_objects(ctx: Context, app_name: str, cluster: Cluster, mode: str) -> Any:
    """Orphan or prune what ``app_name`` applied on ``cluster`` (it left the spec)."""
    from workers.apply.removal import remove_unit

    return remove_unit(ctx.kube(cluster), app_name, mode)


CAPABILITIES_EVERY = 600.0
_capabilities_at: dict[str, float] = {}


def _record_capabilities(ctx: Context, cluster: Cluster) -> None:
    """Tell render workers (which may not reach the cluster) its version and API versions,
    for ``helm template --kube-version/--api-versions``: at most every 10 minutes per
    cluster and process; a failure only costs helm its defaults."""
    now = time.monotonic()
    if now - _capabilities_at.get(cluster.name, -CAPABILITIES_EVERY) < CAPABILITIES_EVERY:
        return
    _capabilities_at[cluster.name] = now
    from workers.apply.discovery import PROCESS, capabilities
    from workers.render.helm import record_capabilities

    try:
        version, served = capabilities(ctx.kube(cluster), PROCESS)
        record_capabilities(ctx.redis, cluster.name, version, served)
    except (FleetsyncError, RedisError) as exc:     # best effort: never fails an apply
        log.info("cluster capabilities not recorded", cluster=cluster.name, error=str(exc))


def identity_of(app: Application, cluster: Cluster) -> str | None:
    """The ServiceAccount (``namespace/name``) every request of ``app`` impersonates on
    ``cluster``: the application's, else the cluster's default, else none."""
    return app.service_account or cluster.service_account


def message(counts: dict[str, int]) -> str:
    parts = [f"{n} {action}" for action, n in counts.items() if n]
    return ", ".join(parts) or "nothing to do"
