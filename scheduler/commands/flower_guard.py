"""Flower behind a guard: ``python -m scheduler.commands.flower_guard -A scheduler.app flower ...``.

Without authentication, ``fleetsync flower`` listens on loopback and sets
``FLOWER_UNAUTHENTICATED_API`` so that local scripts may use Flower's API. Flower
(2.2) then answers every origin with ``Access-Control-Allow-Origin: *`` (its
``BaseHandler.set_default_headers``) and skips its cross-site check (its
``check_xsrf_cookie`` returns at once without authentication), so any page the
operator opens could read the tasks' arguments and results, enqueue tasks and
shut the workers down. Flower has no option that turns either off.

This launcher runs Celery's own command line (``celery -A ... flower``) after
putting ``GuardedFlower`` where Flower's command looks up its application
class (``flower.command.Flower``). Nothing else of Flower changes: its
options, its handlers and its state file are its own. When authentication is
configured (``--basic_auth``, ``--auth``) the guard stands aside: Flower's own
checks apply and remote control is the authenticated operator's. Without it,
``GuardedFlower`` routes each request as Flower does, then asks ``refusal``
(pure) whether to answer it, and strips every ``Access-Control-*`` header:

- the ``Host`` must be a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``),
  as ``fleetsync server`` asks, so a page that rebinds its own name to
  127.0.0.1 is refused;
- a request with an ``Origin`` (every cross-origin ``fetch``, form post and
  preflight) must come from Flower's own origin: scheme, host and port; a
  request that changes something must not say it is cross-site or same-site
  (``Sec-Fetch-Site``);
- remote control (shutdown, pool restart/grow/shrink/autoscale, add/cancel
  consumer, revoke, abort, time and rate limits) is refused: it needs
  authentication. Reading the tasks and sending one (``/api/task/...``) stay
  open to local scripts, which send no ``Origin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flower.command
from celery.__main__ import main as celery_main
from flower.api.control import ControlHandler
from flower.api.tasks import TaskAbort
from flower.app import Flower
from tornado import httputil
from tornado.web import OutputTransform, RequestHandler

from scheduler.server.access import host_name, loopback_name, same_origin

SAFE_METHODS = ("GET", "HEAD")


@dataclass(frozen=True)
class Asked:
    """What ``refusal`` reads of a request."""

    method: str
    scheme: str
    host: str
    origin: str = ""
    fetch_site: str = ""          # Sec-Fetch-Site: same-origin, same-site, cross-site, none
    control: bool = False         # the route is one of Flower's remote-control endpoints


def refusal(asked: Asked) -> str:
    """Why an unauthenticated Flower must not answer ``asked``; "" when it may (pure)."""
    if not loopback_name(host_name(asked.host)):
        return (f"Host {asked.host!r} is not a loopback name: without authentication Flower "
                "answers only http://127.0.0.1 or http://localhost")
    if asked.origin and not same_origin(asked.origin, asked.scheme, asked.host):
        return "requests from pages of another origin are refused"
    if asked.method not in SAFE_METHODS and asked.fetch_site in ("cross-site", "same-site"):
        return "requests from pages of another site are refused"
    if asked.control:
        return ("remote control of workers and tasks needs authentication: set "
                "FLOWER_BASIC_AUTH=user:password (or Flower's OAuth options)")
    return ""


def is_control(handler_class: type) -> bool:
    """One of Flower's remote-control handlers (its worker list, a GET, only inspects)."""
    return issubclass(handler_class, (ControlHandler, TaskAbort))


class Refused(RequestHandler):
    """403 with the reason, as plain text; no Flower handler runs."""

    def initialize(self, reason: str) -> None:
        self.reason = reason

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(self.reason + "\n")

    def check_xsrf_cookie(self) -> None:
        pass                      # refused already: no token to check


class NoCorsGrant(OutputTransform):
    """Removes the ``Access-Control-*`` headers Flower sets for unauthenticated use."""

    def transform_first_chunk(self, status_code: int, headers: httputil.HTTPHeaders,
                              chunk: bytes, finishing: bool
                              ) -> tuple[int, httputil.HTTPHeaders, bytes]:
        for name in [n for n in headers if n.lower().startswith("access-control-")]:
            del headers[name]
        return status_code, headers, chunk


class GuardedFlower(Flower):
    """Flower's application, with ``refusal`` in front of its handlers when unauthenticated."""

    def __init__(self, options: Any = None, **kwargs: Any) -> None:
        super().__init__(options=options, **kwargs)
        self.guarded = not (self.options.basic_auth or self.options.auth)
        if self.guarded:
            self.add_transform(NoCorsGrant)

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> Any:
        delegate = super().find_handler(request, **kwargs)
        if not self.guarded:
            return delegate
        why = refusal(Asked(
            method=request.method or "GET", scheme=request.protocol, host=request.host,
            origin=request.headers.get("Origin", ""),
            fetch_site=request.headers.get("Sec-Fetch-Site", ""),
            control=is_control(getattr(delegate, "handler_class", object))
            and (request.method or "GET") not in SAFE_METHODS))
        if why:
            return self.get_handler_delegate(request, Refused, {"reason": why})
        return delegate


def main() -> None:
    flower.command.Flower = GuardedFlower
    celery_main()


if __name__ == "__main__":
    main()
