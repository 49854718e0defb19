"""The render stage: the objects one sync unit wants at one revision.

A render is two steps of very different cost, kept apart so that a fleet shares
the expensive one:

1. ``build_raw(tree, path)``: kustomize build of a kustomization, or, for a
   plain directory, the text of the manifest files and the kustomize output of
   the sub-directories that ``workers.render.layout`` picks (per the application's
   ``directory`` options). Depends only on the checkout, the path (after
   ``${var}`` substitution), those options and the renderer; expensive; cached
   in Redis under a key without cluster variables, so 100 clusters that differ
   only in ``cluster_name`` run kustomize once.
2. ``finish(raw, variables, namespace)``: ``${var}`` substitution on the text,
   safe YAML loading, then ``manifests.normalize``. Cheap and pure; run per
   cluster. Its result is cached too, keyed on the values of the variables the
   text actually references, and that key is what the apply stage receives.

``render()`` composes both without a cache; ``render_unit()`` with one, and
returns a ``Rendered`` that carries the warnings (documents skipped as not
Kubernetes objects) next to the objects; ``render_cached()`` is its older
tuple form. A render of zero objects is not refused here: whether that is
allowed depends on what the unit applied before, which only the apply stage
knows (``allowEmpty``). Every error leaving this module names the sync unit and
the revision.

SOPS files are decrypted in the expensive step (``workers.render.sops``): a plain
directory's in memory as they are read, a kustomization's in a private copy of
the checkout that kustomize builds. A file that this worker cannot decrypt
fails the render with the file and the reason, and nothing is applied.

Helm charts (an application of a Helm repository source, or a ``path`` that
holds ``Chart.yaml``) take the same two steps through ``workers.render.helm``: the
expensive one is ``helm template`` with the values this cluster merges to, keyed
on the chart's digest (the archive's sha256, or the revision and path of a chart
in Git), those values, the release, namespace, the cluster's capabilities and
the helm version, so clusters with equal values share one helm run; the cheap
one loads the output (no ``${var}`` substitution in it: the cluster's variables
go into the values) and keeps ``helm.sh/hook`` objects with their annotations.
A chart directory that also holds a kustomization is built as the kustomization
says (``workers.render.overchart``): kustomize over the chart's output, in the
expensive step, or kustomize alone when its ``helmCharts`` render the chart.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from shared.errors import FleetsyncError, RenderError, TransientError
from shared.logs import get_logger
from shared.spec.model import Application, Cluster, Directory
from shared.yamlsafe import load_documents
from workers.render import helm as charts
from workers.render import kustomize, overchart
from workers.render.tree import (RawDoc, check_size, display, read_files, refuse_escaping_links,
                                 resolve_inside)
from workers.fetch.helmrepo import ChartArchive
from workers.render.layout import scan
from workers.render.manifests import Located, ScopePredicate, is_cluster_scoped, normalize_report
from workers.render.cache import RenderCache, canonical_json, render_key
from workers.render.sops import Sops, decrypt_doc
from workers.render.variables import referenced, substitute

RENDERER = "fleetsync-render/4"   # bump when finish() or build_raw() change their output
WARNINGS = ":warnings"            # suffix of the cache entry holding a final render's warnings

log = get_logger("fleetsync.render")


@dataclass(frozen=True)
class Rendered:
    """One unit's render: the objects, their cache key, whether the expensive step
    was a cache hit, and warnings about documents that were skipped."""

    objects: list[dict[str, Any]]
    key: str = ""
    hit: bool = False
    warnings: tuple[str, ...] = ()


@functools.lru_cache(maxsize=1)
def renderer_version() -> str:
    """``RENDERER`` plus the kustomize version: part of every cache key."""
    try:
        return f"{RENDERER} {kustomize.version()}"
    except RenderError:
        return f"{RENDERER} kustomize/none"


def __getattr__(name: str) -> Any:
    # RENDERER_VERSION runs kubectl once, on first use rather than on import.
    if name == "RENDERER_VERSION":
        return renderer_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def app_path(app: Application, variables: Mapping[str, str]) -> str:
    """The application's path with ``${var}`` substituted."""
    return substitute(app.path, variables, where=f"application {app.name!r} path")


def build_raw(tree: Path, path: str, *, allow_remote_bases: bool = False,
              timeout: float = kustomize.DEFAULT_TIMEOUT,
              directory: Directory = Directory(), sops: Sops = Sops(),
              helm: charts.Helm | None = None) -> list[RawDoc]:
    """The expensive step: kustomize output, or a plain directory's files and kustomizations,
    SOPS files decrypted with ``sops``; ``helm`` given: kustomize may render ``helmCharts``."""
    root = tree.resolve()
    target = resolve_inside(root, path)
    if kustomize.kustomization_file(target) is not None:
        return [_kustomize(root, target, allow_remote_bases, timeout, sops, helm)]
    layout = scan(root, target, directory)
    docs, total = read_files(layout.files)
    docs = [decrypt_doc(doc, sops) for doc in docs]
    for where, real in layout.kustomizations:
        built = _kustomize(root, real, allow_remote_bases, timeout, sops, helm)
        total = check_size(len(built.text), total, where)
        docs.append(RawDoc(f"{where} (kustomize build)", built.text))
    return sorted(docs, key=lambda doc: doc.source)


def _kustomize(root: Path, directory: Path, allow_remote: bool, timeout: float,
               sops: Sops, helm: charts.Helm | None = None) -> RawDoc:
    text = kustomize.build(root, directory, allow_remote=allow_remote, timeout=timeout, sops=sops,
                           helm=helm)
    return RawDoc(f"{display(root, directory)} (kustomize build)", text)


def finish(raw: list[RawDoc], variables: Mapping[str, str], namespace: str | None = None,
           scoped: ScopePredicate = is_cluster_scoped) -> list[dict[str, Any]]:
    """The cheap step: substitute, load, check, default the namespace, order."""
    return finish_report(raw, variables, namespace, scoped)[0]


def finish_report(raw: list[RawDoc], variables: Mapping[str, str], namespace: str | None = None,
                  scoped: ScopePredicate = is_cluster_scoped, helm_hooks: bool = False
                  ) -> tuple[list[dict[str, Any]], list[str]]:
    """``finish``, and the warnings about documents skipped as not Kubernetes objects.

    ``helm_hooks`` (kustomize ``helmCharts``): hooks are kept, ``test`` hooks dropped."""
    docs: list[Located] = []
    for doc in raw:
        text = substitute(doc.text, variables, where=doc.source)
        docs.extend(Located(value, f"{doc.source}:{line}")
                    for line, value in load_documents(text, doc.source)
                    if not (helm_hooks and charts.is_test_hook(value)))
    return normalize_report(docs, namespace, scoped, helm_hooks=helm_hooks)


def finish_chart(raw: list[RawDoc], namespace: str | None = None,
                 scoped: ScopePredicate = is_cluster_scoped
                 ) -> tuple[list[dict[str, Any]], list[str]]:
    """The cheap step of a chart: load (no substitution), drop ``test`` hooks, check, default
    the namespace, order; ``helm.sh/hook`` objects are kept for the apply engine."""
    docs = [Located(value, f"{doc.source}:{line}") for doc in raw
            for line, value in load_documents(doc.text, doc.source)
            if not charts.is_test_hook(value)]
    return normalize_report(docs, namespace, scoped, helm_hooks=True)


def unit_of(app: Application, cluster: Cluster) -> str:
    return f"{cluster.name}/{app.name}"


@contextlib.contextmanager
def labelled(unit: str, revision: str) -> Iterator[None]:
    """Re-raise render errors with the sync unit and revision attached."""
    try:
        yield
    except (RenderError, TransientError) as exc:
        if exc.unit:
            raise
        again: FleetsyncError
        if isinstance(exc, TransientError):
            again = type(exc)(exc.message, delay=exc.delay, unit=unit, revision=revision or None, obj=exc.obj)
        else:
            again = type(exc)(exc.message, unit=unit, revision=revision or None, obj=exc.obj)
        raise again from exc


def render(app: Application, cluster: Cluster, tree: Path, *, revision: str = "",
           source: str = "", sops: Sops | None = None) -> list[dict[str, Any]]:
    """The objects ``app`` wants on ``cluster`` from the checkout ``tree``, uncached.

    ``sops`` None: this worker's (``Sops.from_env``)."""
    with labelled(unit_of(app, cluster), revision):
        chart = charts.is_chart(resolve_inside(tree.resolve(), app_path(app, cluster.variables())))
    if chart:
        return render_unit(app, cluster, tree, None, revision, source, sops).objects
    del source  # the checkout is given: the source only matters to the cache key
    variables = cluster.variables()
    with labelled(unit_of(app, cluster), revision):
        raw = build_raw(tree, app_path(app, variables), allow_remote_bases=app.allow_remote_bases,
                        directory=app.directory, sops=sops or Sops.from_env())
        return finish(raw, variables, app.namespace)


def _renderer(app: Application) -> str:
    """Everything besides the revision, path and variables that changes a render's output."""
    renderer = renderer_version() + (" remote-bases" if app.allow_remote_bases else "")
    renderer += " helm-charts" if app.allow_helm_charts else ""
    if app.directory != Directory():
        options = app.directory
        renderer += (f" directory recurse={options.recurse} include={list(options.include)}"
                     f" exclude={list(options.exclude)}")
    return renderer


def _keys(app: Application, source: str, rel: str, revision: str, raw: list[RawDoc] | None,
          variables: Mapping[str, str]) -> str:
    """The raw key (``raw`` None) or the final key (values of the referenced variables)."""
    renderer = _renderer(app)
    where = f"{source}:{rel}"
    if raw is None:       # a key of its own kind: it must never equal a final key
        return render_key(revision, f"raw:{where}", {}, renderer, None)
    return render_key(revision, where, _used(raw, variables), renderer, app.namespace)


def _used(raw: list[RawDoc], variables: Mapping[str, str]) -> dict[str, str]:
    """The variables the documents refer to, with their values on this cluster."""
    names = set().union(*(referenced(doc.text) for doc in raw))
    return {name: variables[name] for name in sorted(names) if name in variables}


def _raw(app: Application, root: Path, rel: str, cache: RenderCache | None,
         key: str, sops: Sops, helm: charts.Helm | None = None) -> tuple[list[RawDoc], bool]:
    """The expensive step, through the cache when there is one."""
    def build() -> list[dict[str, Any]]:
        docs = build_raw(root, rel, allow_remote_bases=app.allow_remote_bases,
                         directory=app.directory, sops=sops,
                         # the raw build is shared by clusters: helm's defaults, not
                         # one cluster's capabilities
                         helm=replace(helm or charts.Helm(), capabilities=charts.Capabilities())
                         if app.allow_helm_charts else None)
        return [asdict(doc) for doc in docs]

    rows, hit = cache.get_or_render(key, build) if cache is not None else (build(), False)
    return [RawDoc(row["source"], row["text"]) for row in rows], hit


def _final(raw: list[RawDoc], variables: Mapping[str, str], namespace: str | None,
           cache: RenderCache | None, key: str, meta: dict[str, Any],
           chart: bool = False, helm_hooks: bool = False, built: bool = False
           ) -> tuple[list[dict[str, Any]], list[str]]:
    """The cheap step, stored under the final key for the apply stage (its warnings beside),
    with ``meta``: what it was rendered for, checked again before it is applied. ``built``:
    the raw build was made just now, so its final entry is not looked for (it could only be
    there had another worker made the same one meanwhile: then it is made twice, equal)."""
    objects = cache.get(key) if cache is not None and not built else None
    if objects is not None and cache is not None:
        return objects, [row["warning"] for row in cache.get(key + WARNINGS) or []]
    objects, warnings = (finish_chart(raw, namespace) if chart
                         else finish_report(raw, variables, namespace, helm_hooks=helm_hooks))
    if cache is not None:
        if warnings:      # first: a reader that finds the objects finds their warnings
            cache.put(key + WARNINGS, [{"warning": w} for w in warnings])
        cache.put(key, objects, meta)
    return objects, warnings


def entry_meta(app: Application, cluster: Cluster, source: str, revision: str,
               used: Mapping[str, str]) -> dict[str, Any]:
    """What a final render entry was rendered for: the inputs of its key, in the clear
    inside the sealed entry. Units with equal inputs share an entry (their renders
    are equal), so it names no unit: ``mismatch`` checks it against one."""
    return {"revision": revision, "source": source,
            "path": app_path(app, cluster.variables()), "namespace": app.namespace,
            "renderer": _renderer(app), "vars": dict(used)}


def mismatch(meta: Mapping[str, Any], app: Application, cluster: Cluster,
             revision: str) -> str:
    """Why a render entry is not a render of ``app`` on ``cluster`` at ``revision``, or ""."""
    variables = cluster.variables()
    want = entry_meta(app, cluster, app.source, revision, {})
    for field in ("revision", "source", "path", "namespace", "renderer"):
        if meta.get(field) != want[field]:
            return f"it was rendered for {field} {meta.get(field)!r}, not {want[field]!r}"
    used = meta.get("vars")
    if not isinstance(used, dict) or any(variables.get(k) != v for k, v in used.items()):
        return "it was rendered with other values of the cluster's variables"
    return ""


def render_unit(app: Application, cluster: Cluster, tree: Path | None,
                cache: RenderCache | None, revision: str, source: str = "",
                sops: Sops | None = None, *, helm: charts.Helm | None = None,
                archive: ChartArchive | None = None, shared: bool = True) -> Rendered:
    """The render of one unit, through ``cache`` when given, with its key and warnings.

    Without a cache or a revision nothing is stored (an empty revision does not
    identify the checkout's content); the key is still computed. ``sops`` None:
    this worker's age key and sops (``Sops.from_env``). ``helm``: how charts are
    rendered here (None: ``helm`` on PATH, the cluster's capabilities unknown);
    ``archive``: the chart of a Helm repository source (``tree`` is then None).
    ``shared`` False: no other unit can use the raw build (``Fleet.shares_builds``), so
    it is neither stored nor built under the fleet-wide lock; the final entry still is.
    """
    sops = sops or Sops.from_env()
    variables = cluster.variables()
    cache = cache if revision else None
    with labelled(unit_of(app, cluster), revision):
        chart = _chart(app, tree, revision, archive, variables)
        if chart is not None:
            return _render_chart(app, cluster, chart, tree, cache, revision, source,
                                 helm or charts.Helm(), sops, shared)
        if tree is None:
            raise RenderError(f"application {app.name}: nothing to render (no checkout)")
        root = tree.resolve()
        rel = display(root, resolve_inside(root, app_path(app, variables)))
        raw, hit = _raw(app, root, rel, cache if shared else None,
                        _keys(app, source, rel, revision, None, variables), sops, helm)
        # the final entry is the cluster's own (a pull worker may read only its cluster's);
        # the expensive raw build above stays shared by every cluster
        key = f"{cluster.name}/{_keys(app, source, rel, revision, raw, variables)}"
        objects, warnings = _final(raw, variables, app.namespace, cache, key, entry_meta(
            app, cluster, source, revision, _used(raw, variables)),
            helm_hooks=app.allow_helm_charts, built=not hit)
    return Rendered(objects, key, hit, tuple(warnings))


@dataclass(frozen=True)
class ChartInput:
    """The chart a unit renders: its path (a directory of the checkout or a verified archive),
    what identifies its content, and its name in messages."""

    path: Path
    digest: str
    label: str
    over: str = ""      # a resources entry: a kustomization builds over the output there


def _chart(app: Application, tree: Path | None, revision: str, archive: ChartArchive | None,
           variables: Mapping[str, str]) -> ChartInput | None:
    if archive is not None:
        return ChartInput(archive.path, f"sha256:{archive.digest}",
                          f"chart {archive.name} {archive.version}")
    if tree is None:
        return None
    root = tree.resolve()
    target = resolve_inside(root, app_path(app, variables))
    if not charts.is_chart(target):
        return None
    refuse_escaping_links(root, target)
    rel = display(root, target)
    over = ""
    if overchart.is_kustomized_chart(target):
        over = overchart.output_entry(root, target)
        if over == overchart.RENDERS_ITSELF:
            return None     # its kustomization renders it (helmCharts): a kustomize build
    return ChartInput(target, f"git:{revision}:{rel}" + (f" kustomize:{over}" if over else ""),
                      rel, over)


def _render_chart(app: Application, cluster: Cluster, chart: ChartInput, tree: Path | None,
                  cache: RenderCache | None, revision: str, source: str,
                  helm: charts.Helm, sops: Sops, shared: bool = True) -> Rendered:
    """A chart's render: ``helm template`` shared by the clusters whose values are equal
    (then kustomize over its output, ``chart.over``: ``workers.render.overchart``)."""
    values, used = charts.merged_values(app, cluster, tree.resolve() if tree else None)
    release = app.helm.release_name or app.name
    namespace = app.namespace or "default"
    inputs = {"values": hashlib.sha256(canonical_json(values)).hexdigest(), "release": release,
              **helm.target().describe(), "helm": charts.version(helm.executable())}
    raw_key = render_key("", f"raw:helm:{chart.digest}", inputs, _renderer(app), namespace)

    def build() -> list[dict[str, Any]]:
        docs = charts.template(chart.path, release, namespace, values, helm, chart.label)
        if chart.over and tree is not None:
            text = overchart.build(tree.resolve(), chart.path, chart.over,
                                   "---\n".join(doc.text for doc in docs),
                                   allow_remote=app.allow_remote_bases,
                                   timeout=kustomize.DEFAULT_TIMEOUT, sops=sops)
            docs = [RawDoc(f"{chart.label} (helm template, kustomize build)", text)]
        return [asdict(doc) for doc in docs]

    rows, hit = (cache.get_or_render(raw_key, build) if cache is not None and shared
                 else (build(), False))
    raw = [RawDoc(row["source"], row["text"]) for row in rows]
    key = f"{cluster.name}/" + render_key(revision, f"{source}:helm:{raw_key}", used,
                                          _renderer(app), app.namespace)
    objects, warnings = _final(raw, {}, app.namespace, cache, key, entry_meta(
        app, cluster, source, revision, used), chart=True, built=not hit)
    return Rendered(objects, key, hit, tuple(warnings))


def render_cached(app: Application, cluster: Cluster, tree: Path, cache: RenderCache | None,
                  revision: str, source: str = "", sops: Sops | None = None
                  ) -> tuple[list[dict[str, Any]], str, bool]:
    """``(objects, key, hit)`` of ``render_unit``; its warnings go to the log."""
    rendered = render_unit(app, cluster, tree, cache, revision, source, sops)
    for warning in rendered.warnings:
        log.warning("render skipped a document", unit=unit_of(app, cluster), detail=warning)
    return rendered.objects, rendered.key, rendered.hit
