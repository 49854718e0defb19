"""The ``notifications`` section of a fleet spec: routes, settle timeout, debounce.

``load`` hands the section's node here with the applications it has
read, and gets a ``Notifications`` back after every problem has been reported
with its line and field, as for the rest of the file:

    notifications:
      settleTimeout: 10m        # a revision not settled by then is reported as it stands
      debounce: 10s             # a change into or out of Failed/Degraded must hold this long
      routes:
        - name: team-chat
          provider: slack       # slack | webhook | github
          urlEnv: SLACK_WEBHOOK_URL
          applications: [web]   # omitted: every application
          events: [rollup, failure]   # and held: a revision a hold keeps back, once
          maxPerMinute: 20

Secrets are referenced, never written: a Slack webhook URL is itself a secret,
so ``slack`` takes ``urlEnv`` only; ``webhook`` takes ``url`` (refused when it
carries a password or a query string) or ``urlEnv`` and an optional
``tokenEnv``; ``github`` takes ``api`` (default ``https://api.github.com``),
``repository`` (``owner/repo``) and ``tokenEnv``; ``gitlab`` takes ``api``
(default ``https://gitlab.com/api/v4``), ``project`` (``group/project``, or its
number) and ``tokenEnv``.

A ``github`` or ``gitlab`` route is also where a pull request's preview is
posted (its commit status and its one comment): the route whose repository or
project is the pull request's. A ``gitlab`` route serves previews only.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Collection

from yaml.nodes import Node, ScalarNode

from shared.spec import yaml as y
from shared.spec.model import Notifications, Route
from shared.spec.yaml import Report

PROVIDERS = ("slack", "webhook", "github", "gitlab")
EVENTS = ("rollup", "failure", "held")
DEFAULT_EVENTS = ("rollup", "failure")      # held only when a route asks for it
CONTEXTS = ("application", "fleet")
_KEYS = ("routes", "settleTimeout", "debounce")
_ROUTE_KEYS = ("name", "provider", "url", "urlEnv", "tokenEnv", "api", "repository", "context",
               "applications", "events", "maxPerMinute", "project")
_SECRET = "inline secrets are not allowed: put the value in an environment variable and name it with tokenEnv"
_HINTS = {k: _SECRET for k in ("token", "secret", "password", "apiKey")}
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HTTP_URL = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_PROJECT = re.compile(r"[0-9]+|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+")
DEFAULT_API = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}
_NEEDS = {"slack": ("urlEnv",), "webhook": (), "github": ("repository", "tokenEnv"),
          "gitlab": ("project", "tokenEnv")}
_REFUSED = {"slack": ("url", "api", "repository", "context", "tokenEnv", "project"),
            "webhook": ("api", "repository", "context", "project"),
            "github": ("url", "urlEnv", "project"),
            "gitlab": ("url", "urlEnv", "repository", "context", "events")}


def read_notifications(node: Node, field: str, report: Report,
                       applications: Collection[str], durations: Any) -> Notifications | None:
    """The section as a ``Notifications``; ``durations`` reads ``30s``-style values."""
    if isinstance(node, ScalarNode) and node.tag == y.NULL:
        return Notifications()
    m = y.mapping(node, field, report, _KEYS)
    if m is None:
        return None
    no_routes: tuple[Route, ...] = ()
    routes = m.read("routes", partial(_routes, applications=applications), report, no_routes)
    return Notifications(routes=routes,
                         settle_timeout=m.read("settleTimeout", durations, report, 600.0),
                         debounce=m.read("debounce", partial(_debounce, durations=durations),
                                         report, 10.0))


def _debounce(node: Node, field: str, report: Report, durations: Any) -> float | None:
    if isinstance(node, ScalarNode) and node.value in ("0", "0s"):
        return 0.0      # report every change as soon as it is seen
    value: float | None = durations(node, field, report)
    return value


def _routes(node: Node, field: str, report: Report,
            applications: Collection[str]) -> tuple[Route, ...] | None:
    if isinstance(node, ScalarNode) and node.tag == y.NULL:
        return ()
    items = y.sequence(node, field, report)
    if items is None:
        return None
    out: list[Route] = []
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        route = _route(item, f"{field}[{i}]", report, applications)
        if route is None:
            continue
        if route.name in first:
            report.error(item, f"{field}[{i}].name",
                         f"duplicate route name {route.name!r} (first at line {first[route.name]})")
            continue
        first[route.name] = y.line(item)
        out.append(route)
    return tuple(out)


def _route(node: Node, field: str, report: Report, applications: Collection[str]) -> Route | None:
    m = y.mapping(node, field, report, _ROUTE_KEYS, required=("name", "provider"), hints=_HINTS)
    if m is None:
        return None
    name = m.read("name", partial(y.checked, check=_name), report, "")
    provider = m.read("provider", partial(y.checked, check=_one_of(PROVIDERS)), report, "")
    env = partial(y.checked, check=_env)
    route = Route(
        name=name, provider=provider,
        url=m.read("url", partial(y.checked, check=_url), report, None),
        url_env=m.read("urlEnv", env, report, None),
        token_env=m.read("tokenEnv", env, report, None),
        api=m.read("api", partial(y.checked, check=_api), report,
                   DEFAULT_API.get(provider, DEFAULT_API["github"])).rstrip("/"),
        repository=m.read("repository", partial(y.checked, check=_repository), report, "")
        or m.read("project", partial(y.checked, check=_project), report, ""),
        context=m.read("context", partial(y.checked, check=_one_of(CONTEXTS)), report, "application"),
        applications=m.read("applications",
                            partial(y.names, known=applications, what="application"), report, None),
        events=m.read("events", _events, report, DEFAULT_EVENTS),
        max_per_minute=m.read("maxPerMinute", _per_minute, report, 20))
    if provider in PROVIDERS:
        _check_provider(m, provider, report)
    return route if name and provider else None


def _check_provider(m: y.Map, provider: str, report: Report) -> None:
    for key in _NEEDS[provider]:
        if key not in m.values:
            report.error(m.node, m.at(key), f"is required for provider {provider}")
    for key in _REFUSED[provider]:
        if key in m.values:
            report.error(m.values[key], m.at(key), f"does not apply to provider {provider}")
    if provider == "webhook" and ("url" in m.values) == ("urlEnv" in m.values):
        report.error(m.node, m.field, "give exactly one of url or urlEnv")
    if provider == "github" and "events" in m.values and {"failure", "held"} & set(
            _values(m.values["events"])):
        report.error(m.values["events"], m.at("events"),
                     "a commit status reports roll-ups only: use events: [rollup]")


def _values(node: Node) -> list[str]:
    return [n.value for n in getattr(node, "value", []) if isinstance(n, ScalarNode)]


def _events(node: Node, field: str, report: Report) -> tuple[str, ...] | None:
    items = y.sequence(node, field, report)
    if items is None:
        return None
    if not items:
        report.error(node, field, f"must list at least one of {', '.join(EVENTS)}")
        return None
    found = [y.checked(item, f"{field}[{i}]", report, _one_of(EVENTS)) for i, item in enumerate(items)]
    return tuple(dict.fromkeys(e for e in found if e))


def _per_minute(node: Node, field: str, report: Report) -> int | None:
    if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:int":
        value = int(node.value)
        if value >= 1:
            return value
    report.error(node, field, f"must be a whole number of messages of at least 1, not {node.value!r}"
                 if isinstance(node, ScalarNode) else f"must be a number, not {y.kind(node)}")
    return None


def _one_of(allowed: tuple[str, ...]) -> Any:
    def check(text: str) -> str | None:
        return None if text in allowed else f"must be one of {', '.join(allowed)}, not {text!r}"
    return check


def _name(text: str) -> str | None:
    if _NAME.fullmatch(text):
        return None
    return (f"{text!r} is not a valid name: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters")


def _env(text: str) -> str | None:
    if _ENV.fullmatch(text):
        return None
    return "must be the name of an environment variable (letters, digits and '_'), not its value"


def _url(text: str) -> str | None:
    if "@" in text.split("//", 1)[-1].split("/", 1)[0]:
        return "must not carry credentials: name a token with tokenEnv, or the URL with urlEnv"
    if "?" in text or "#" in text:
        return "must not carry a query string (where tokens hide): put the URL in urlEnv"
    return None if _HTTP_URL.fullmatch(text) else f"must be an http:// or https:// URL, not {text!r}"


def _api(text: str) -> str | None:
    return _url(text)


def _project(text: str) -> str | None:
    return None if _PROJECT.fullmatch(text) else \
        f"must be the project's path (group/project) or its number, not {text!r}"


def _repository(text: str) -> str | None:
    return None if _REPOSITORY.fullmatch(text) else f"must be owner/repo, not {text!r}"

