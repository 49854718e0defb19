"""What a registry's push notification says, and whether it concerns an OCI source (pure).

``POST /hooks/registry/<source>`` takes the notifications registries send on a
push, in the shapes they document:

- CNCF distribution (and registries built on it): the envelope
  ``{"events": [{"id", "action": "push", "target": {"repository", "tag",
  "digest", "mediaType"}, "request": {"host"}}]}``; pull and delete events
  are acknowledged and ignored;
- Harbor: ``{"type": "PUSH_ARTIFACT", "event_data": {"repository":
  {"repo_full_name"}, "resources": [{"tag", "digest"}]}}``;
- Docker Hub: ``{"push_data": {"tag"}, "repository": {"repo_name"}}``.

The sender proves itself with the source's secret, as the other hooks do: as
``Authorization: Bearer <secret>`` (distribution's ``notifications.endpoints[].headers``;
Harbor's "Auth Header", which may also hold the secret alone) or
``X-Fleetsync-Token``. Docker Hub's webhooks carry no secret: they reach
fleetsync only through a relay that adds one.

A push concerns the source when its repository is the source's repository (an
artifact) or one of the charts its applications ask for below the source's
path (``oci://host/path`` + chart ``web`` is ``path/web``). The registry host in
the notification is not compared: a registry is often reached under several
names; the route names the source already.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Mapping

from scheduler.server import bodies
from shared.ocirefs import OciUrlError, parse_oci_url
from shared.spec.model import Fleet, Source

MAX_EVENTS = 100


@dataclass(frozen=True)
class RegistryPush:
    repository: str
    tag: str = ""
    digest: str = ""


def verify(secret: str, headers: Mapping[str, str]) -> str:
    """Why the request does not carry ``secret``; "" when it does (constant time)."""
    header = headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else header.strip()
    token = token or headers.get("x-fleetsync-token", "")
    if not token:
        return "no Authorization or X-Fleetsync-Token header"
    return "" if hmac.compare_digest(token.encode(), secret.encode()) \
        else "the token is not the source's secret"


def delivery_of(body_events: list[dict[str, Any]]) -> str:
    """Distribution's event id (the same on a retry), or ""."""
    first = body_events[0] if body_events else {}
    found = first.get("id") if isinstance(first, dict) else None
    return found[:100] if isinstance(found, str) else ""


def parse(body: bytes) -> tuple[list[RegistryPush], str]:
    """The pushes in a notification, and a delivery id; ``bodies.TooDeep`` when the
    body nests deeper than ``bodies.MAX_DEPTH``. What cannot be read is left out."""
    try:
        data = bodies.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return [], ""
    if not isinstance(data, dict):
        return [], ""
    if isinstance(data.get("events"), list):
        events = [e for e in data["events"][:MAX_EVENTS] if isinstance(e, dict)]
        return [push for e in events if e.get("action") == "push"
                for push in [_distribution(e)] if push], delivery_of(events)
    if isinstance(data.get("event_data"), dict):
        return (_harbor(data["event_data"]) if data.get("type") == "PUSH_ARTIFACT" else []), ""
    if isinstance(data.get("push_data"), dict) and isinstance(data.get("repository"), dict):
        name, tag = data["repository"].get("repo_name"), data["push_data"].get("tag")
        if isinstance(name, str):
            return [RegistryPush(name, tag if isinstance(tag, str) else "")], ""
    return [], ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _distribution(event: dict[str, Any]) -> RegistryPush | None:
    target = event.get("target")
    if not isinstance(target, dict) or not _text(target.get("repository")):
        return None
    return RegistryPush(target["repository"], _text(target.get("tag")),
                        _text(target.get("digest")))


def _harbor(data: dict[str, Any]) -> list[RegistryPush]:
    repository = data.get("repository")
    name = _text(repository.get("repo_full_name")) if isinstance(repository, dict) else ""
    if not name:
        return []
    resources = [r for r in data.get("resources") or [] if isinstance(r, dict)][:MAX_EVENTS]
    return [RegistryPush(name, _text(r.get("tag")), _text(r.get("digest")))
            for r in resources] or [RegistryPush(name)]


def repositories(fleet: Fleet, source: Source) -> set[str]:
    """The repositories whose pushes move ``source``."""
    try:
        url = parse_oci_url(source.url)
    except OciUrlError:
        return set()
    charts = {a.chart.name for a in fleet.applications.values()
              if a.source == source.name and a.chart is not None}
    return {url.repository(name) for name in charts} | ({url.path} if url.path else set())


def concerns(fleet: Fleet, source: Source, pushes: list[RegistryPush]) -> str:
    """Why these pushes do not move ``source``; "" when one of them may."""
    if not source.url.lower().startswith("oci://"):
        return f"source {source.name} is not an OCI registry source (oci://)"
    if not pushes:
        return "the notification holds no push"
    wanted = repositories(fleet, source)
    if any(push.repository.lower() in wanted for push in pushes):
        return ""
    shown = ", ".join(sorted({p.repository for p in pushes})[:5])
    return f"pushes to {shown}, not to the source's {', '.join(sorted(wanted)) or 'repositories'}"
