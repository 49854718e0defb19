"""The dashboard: server-rendered pages of the fleet, one unit, one revision.

Jinja2 templates (autoescaped) under ``templates/``, one stylesheet and one
small script under ``static/``, all served by this process: no build step, no
CDN. Each page's live part (``<main id="live">``) is fetched again every few
seconds by ``static/fleet.js`` and swapped in place, so filters, scroll and
open details stay as they were. Every phase is written as a word (and a
symbol) as well as a colour.

Actions: each page shows only the buttons its caller's token may use (its
scopes, its applications); a read-only token sees none. The buttons post to
the JSON API from ``static/fleet.js`` with the page's CSRF token
(``csrf.py``). The fleet page has a window band per cluster
(``windowband.py``); a unit held by a window asks for a reason before a
manual sync.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse

from scheduler import images_view, preview_markdown as md
from scheduler.server import fleetview, windowband
from scheduler.server.access import caller
from scheduler.server.api import FleetSnapshot, unit_detail
from scheduler.server.backend import Backend
from scheduler.server.previews_api import with_costs
from shared.state import previews
from shared.state.rollout_store import Holds

HERE = Path(__file__).parent
SYMBOLS = {"Ready": "✓", "Progressing": "↻", "Degraded": "!", "Drifted": "≠", "Failed": "✗",
           "Suspended": "‖", "Removed": "–", "Unknown": "?",
           "Operator": "⚑"}           # an operator's action in a unit's history


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _short(revision: str) -> str:
    if not revision:
        return "–"
    return revision[:fleetview.SHORT] if all(c in "0123456789abcdef" for c in revision) \
        else revision


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(("html",)), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(age=_age, short=_short)
    env.globals.update(symbols=SYMBOLS, headline=md.headline, counts=md.counts,
                       object_name=md.object_name, fields_of=md.fields_of)
    return env


class Pages:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.env = environment()

    def render(self, name: str, status: int = 200, request: Request | None = None,
               **context: Any) -> HTMLResponse:
        who = caller(request) if request is not None else None
        html = self.env.get_template(name).render(
            refresh_ms=int(self.backend.server.refresh_s * 1000),
            flower_url=self.backend.server.flower_url or "",
            csrf=getattr(request.state, "csrf", "") if request is not None else "",
            may=lambda scope, app: who is not None and not who.refusal(scope, app),
            caller=who.name if who is not None and self.backend.server.tokens else "",
            **context)
        return HTMLResponse(html, status)

    async def fleet(self, request: Request) -> HTMLResponse:
        label = request.query_params.get("label", "")
        by = request.query_params.get("by", "auto")
        snap = await run_in_threadpool(FleetSnapshot, self.backend,
                                       fleetview.parse_labels(label))
        fleet = snap.fleet
        all_labels = sorted({f"{k}={v}" for c in (fleet.clusters.values() if fleet else [])
                             for k, v in c.labels.items()})
        apps = [{"name": a.name, "rollout": a.rollout is not None}
                for a in (fleet.applications.values() if fleet else [])]
        bands = await run_in_threadpool(windowband.bands, fleet, snap.now)   # cron walks
        return self.render("fleet.html", request=request, label=label, apps=apps, bands=bands, by=by, all_labels=all_labels,
                           matrix=fleetview.matrix(snap.rows, by if by in ("cluster", "app")
                                                   else "auto"),
                           counts=fleetview.counts(snap.rows), total=len(snap.rows),
                           rollups=snap.rollups(), problems=snap.spec_problems,
                           now=snap.now.strftime("%H:%M:%S"))

    async def unit(self, request: Request) -> HTMLResponse:
        cluster, app = request.path_params["cluster"], request.path_params["app"]
        found = await run_in_threadpool(unit_detail, self.backend, cluster, app,
                                        self.backend.server.settings.history_size)
        if found is None:
            return self.render("missing.html", 404, request, what=f"no unit {app} on {cluster}")
        now = datetime.now(timezone.utc)
        held = await run_in_threadpool(lambda: windowband.held(self.backend.fleet(), app,
                                                               cluster, now))
        suspension = await run_in_threadpool(Holds(self.backend.redis).suspension, app, cluster)
        return self.render("unit.html", request=request, unit=found, held=held,
                           suspension=suspension, now=now.strftime("%H:%M:%S"))

    async def revision(self, request: Request) -> HTMLResponse:
        wanted = request.path_params["revision"]
        snap = await run_in_threadpool(FleetSnapshot, self.backend, None)
        found = fleetview.find_rollup(snap.rollups(), wanted)
        if not found:
            return self.render("missing.html", 404, request,
                               what=f"no unit of the fleet is at revision {wanted}")
        return self.render("revision.html", request=request, rollups=found, revision=wanted,
                           now=snap.now.strftime("%H:%M:%S"))

    async def previews(self, request: Request) -> HTMLResponse:
        found = await run_in_threadpool(previews.recent, self.backend.redis)
        now = datetime.now(timezone.utc)
        for p in found:
            p["age_s"] = max(0.0, now.timestamp() - float(p.get("started_at") or 0))
        return self.render("previews.html", request=request, previews=found,
                           now=now.strftime("%H:%M:%S"))

    async def images(self, request: Request) -> HTMLResponse:
        """Image policies: latest tag, what Git has, which clusters run which tag."""
        fleet = self.backend.fleet()
        found = await run_in_threadpool(images_view.view, self.backend.redis, fleet) \
            if fleet is not None else {"policies": [], "sources": []}
        now = datetime.now(timezone.utc)
        for item in (*found["policies"], *found["sources"]):
            item["age_s"] = now.timestamp() - float(item["at"]) if item.get("at") else None
            if "clusters" in item:
                item["by_tag"] = _by_tag(item["clusters"])
        return self.render("images.html", request=request, images=found,
                           now=now.strftime("%H:%M:%S"))

    async def preview(self, request: Request) -> HTMLResponse:
        pid = request.path_params["preview"]
        found = await run_in_threadpool(with_costs, self.backend.redis, pid) \
            if pid.isalnum() and len(pid) <= 64 else None
        if found is None:
            return self.render("missing.html", 404, request, what=f"no preview {pid}")
        now = datetime.now(timezone.utc)
        found["age_s"] = max(0.0, now.timestamp() - float(found.get("started_at") or 0))
        by_app: dict[str, list[dict[str, Any]]] = {}
        for unit in found["units"]:
            by_app.setdefault(unit.get("app", ""), []).append(unit)
        return self.render("preview.html", request=request, p=found,
                           by_app=sorted(by_app.items()), now=now.strftime("%H:%M:%S"))


def _by_tag(clusters: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    tags: dict[str, list[dict[str, Any]]] = {}
    for unit in clusters:
        tags.setdefault(str(unit["tag"]), []).append(unit)
    return sorted((tag, sorted(units, key=lambda u: u["cluster"])) for tag, units in tags.items())
