"""The Kubernetes adapter of the apply engine: the only module that imports ``kubernetes``.

Everything above this module speaks plain dicts and URL paths (built by
``discovery``); this module turns them into HTTP requests through the official
client's ``ApiClient`` (for its kubeconfig, TLS and auth handling: its urllib3
connection pool, default headers and credential; the body is JSON-encoded once
here and the answer decoded with ``json.loads``, never walked by the client's
serialiser nor turned into models), counts every request it makes, and turns
every failure into a fleetsync error type (``workers.apply.kubeerrors``, named
here too) chained with ``raise ... from``:

    400/422 invalid, 409 conflict, 401/403 refused   -> ApplyError subclasses (permanent)
    500 "failed to create typed patch object"        -> Invalid (an undeclared field)
    404                                              -> NotFound
    429, 5xx, connection errors, timeouts            -> TransientError (delay = Retry-After)

The counters let callers report how many requests and writes a reconcile cost;
server-side dry-runs are counted apart from writes because they change nothing.

Every request is tried once: urllib3's own retries are switched off
(``retries = False``), because they hid a frozen API server behind four timeouts
per request (a pooled connection's read timeout, then three TLS handshakes that
time out) before fleetsync heard of it. Retrying is fleetsync's: a request that
got no answer (``Unavailable.unreachable``: connection refused, ``timed out
after 5 s``) marks the cluster down (``shared/state/clusters.py``).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Iterable
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from shared.errors import ApplyError
from workers.apply.kubeerrors import (UNDECLARED, Conflict, Invalid, KubeError, NotFound,
                                        Refused, Unavailable, classify, detail, retry_after,
                                        server_message)

__all__ = ["UNDECLARED", "Conflict", "Counters", "Invalid", "Kube", "KubeError", "NotFound",
           "Refused", "Unavailable", "classify", "detail", "retry_after", "server_message",
           "unreachable_reason"]

FIELD_MANAGER = "fleetsync"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
# (connect, read) seconds: a stuck API server fails fast. The connect timeout also
# bounds the TLS handshake of a new connection. An API server answers what fleetsync
# asks (a GET, a labelled LIST from its watch cache, an apply) well within the read
# timeout; one that does not is treated as down.
DEFAULT_TIMEOUT = (5.0, 10.0)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class Counters:
    """Requests made through one ``Kube``, by method; thread-safe."""

    by_method: dict[str, int] = field(default_factory=dict)
    dry_runs: int = 0
    parent: "Counters | None" = None            # also counted there (the client's totals)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, method: str, dry_run: bool) -> None:
        with self._lock:
            self.by_method[method] = self.by_method.get(method, 0) + 1
            if dry_run:
                self.dry_runs += 1
        if self.parent is not None:
            self.parent.record(method, dry_run)

    @property
    def requests(self) -> int:
        return sum(self.by_method.values())

    @property
    def writes(self) -> int:
        """POST/PUT/PATCH/DELETE that could change something (dry-runs excluded)."""
        return sum(n for m, n in self.by_method.items() if m in WRITE_METHODS) - self.dry_runs

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "writes": self.writes, "dry_runs": self.dry_runs}


def unreachable_reason(exc: BaseException) -> str:
    """A short reason for a request that got no answer: ``connection refused``, ..."""
    chain: list[BaseException] = []
    error: BaseException | None = exc
    while error is not None and error not in chain:
        chain.append(error)
        reason = getattr(error, "reason", None)
        error = reason if isinstance(reason, BaseException) else (error.__cause__
                                                                  or error.__context__)
    text = " ".join(str(e) for e in chain).lower()
    # urllib3's NewConnectionError is also a timeout class: look for a refusal first
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text:
        return "connection refused"
    if any(isinstance(e, urllib3.exceptions.NameResolutionError) for e in chain):
        return "host name not resolved"
    if any(isinstance(e, urllib3.exceptions.SSLError) for e in chain):
        return "TLS handshake failed"
    if any(isinstance(e, (TimeoutError, urllib3.exceptions.TimeoutError)) for e in chain) \
            or "timed out" in text:
        waited = re.search(r"timeout=([0-9.]+)", text)     # urllib3 says which one expired
        return f"timed out after {float(waited.group(1)):g} s" if waited else "timed out"
    return "no answer"


REFRESH_EVERY = 1.0        # seconds between token refresh checks of one client


def _throttled(hook: Any) -> Any:
    """The kubeconfig loader's token refresh hook, run at most once a second. The
    client runs it before every request, and it sets the host again (which re-reads
    the proxy settings from the whole environment): a third of a request's CPU. The
    loader renews a token five minutes before it expires, so once a second is ample."""
    lock, last, inner = threading.Lock(), [float("-inf")], [hook]

    def refresh(configuration: Any) -> None:
        with lock:
            now = time.monotonic()
            if now - last[0] < REFRESH_EVERY:
                return
            last[0] = now
            inner[0](configuration)
            if configuration.refresh_api_key_hook is not refresh:   # the loader set its own
                inner[0] = configuration.refresh_api_key_hook
                configuration.refresh_api_key_hook = refresh
    return refresh


def _validation(validation: str | None) -> list[tuple[str, str]]:
    return [("fieldValidation", validation)] if validation else []


def _plain(value: Any) -> Any:
    """JSON for what a YAML render may hold besides JSON's own types: dates, as the
    official client's serialiser writes them."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class Kube:
    """HTTP verbs against one cluster's API server, counted and with wrapped errors."""

    def __init__(self, api_client: k8s_client.ApiClient, *, name: str | None = None,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 impersonate: str | None = None) -> None:
        self.api = api_client
        self.name = name
        self.timeout = timeout
        self.counters = Counters()
        self.impersonate = impersonate    # "namespace/name" of a ServiceAccount, or None
        self._last: list[float | None] = [None]   # its last request's time, shared by sessions

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None,
                        *, name: str | None = None) -> "Kube":
        """From a kubeconfig file; with none, in-cluster config, then ``$KUBECONFIG``."""
        configuration = k8s_client.Configuration()
        try:
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                k8s_config.load_incluster_config(client_configuration=configuration)
            else:
                k8s_config.load_kube_config(config_file=kubeconfig, context=context,
                                            client_configuration=configuration,
                                            persist_config=False)
        except (ConfigException, OSError) as exc:
            raise ApplyError(f"cannot load kubeconfig {kubeconfig or '(default)'}: {exc}",
                             unit=name) from exc
        if configuration.refresh_api_key_hook is not None:
            configuration.refresh_api_key_hook = _throttled(configuration.refresh_api_key_hook)
        configuration.retries = False     # tried once: fleetsync's back-off does the retrying
        return cls(k8s_client.ApiClient(configuration), name=name)

    def session(self, impersonate: str | None = None) -> "Kube":
        """This client with counters of its own (still adding to ours): exact counts for
        one reconcile even when threads share a ``Kube``. With ``impersonate``
        (``namespace/name``), every request acts as that ServiceAccount: the kubeconfig's
        credential then needs only ``impersonate`` on it."""
        session = Kube(self.api, name=self.name, timeout=self.timeout,
                       impersonate=impersonate or self.impersonate)
        session.counters = Counters(parent=self.counters)
        session._last = self._last
        return session

    def own(self) -> "Kube":
        """This client as fleetsync itself (no impersonation), same counters: for its own
        state (inventories in fleetsync-system) and discovery."""
        if not self.impersonate:
            return self
        own = Kube(self.api, name=self.name, timeout=self.timeout)
        own.counters = self.counters
        own._last = self._last
        return own

    @property
    def identity(self) -> str:
        """Who the API server sees, for messages."""
        if not self.impersonate:
            return "fleetsync's own credential"
        return f"ServiceAccount {self.impersonate}"

    @property
    def server(self) -> str:
        """The API server URL: the key for per-server caches such as discovery."""
        return str(self.api.configuration.host)

    def close(self) -> None:
        """Close the pooled connections; the client stays usable (its next request
        connects again)."""
        self._last[0] = None
        self.api.close()

    def close_if_idle(self, seconds: float) -> bool:
        """``close`` when no request (of this client or a session of it) has been made in
        ``seconds`` and some has since the last close."""
        last = self._last[0]
        if last is None or time.monotonic() - last < seconds:
            return False
        self.close()
        return True

    # --- verbs ----------------------------------------------------------------

    def get(self, path: str, *, accept: str | None = None) -> dict:
        return self.request("GET", path, accept=accept)

    def get_or_none(self, path: str) -> dict | None:
        try:
            return self.get(path)
        except NotFound:
            return None

    def list_items(self, path: str, *, label_selector: str | None = None) -> list[dict]:
        query = [("labelSelector", label_selector)] if label_selector else []
        return list(self.request("GET", path, query=query).get("items") or [])

    def apply(self, path: str, obj: dict, *, dry_run: bool = False,
              validation: str | None = None) -> dict:
        """Server-side apply as ``fleetsync``, forcing conflicts (Git owns its fields).
        ``validation``: the ``fieldValidation`` asked (``Ignore``, ``Strict``)."""
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")] + _validation(validation)
        return self.request("PATCH", path, query=query, body=obj, content_type=APPLY_PATCH,
                            dry_run=dry_run)

    def would_create(self, path: str, obj: dict) -> bool:
        """A server-side apply dry-run of ``obj`` (it validates it), and whether the apply
        would create the object: the server answers 201 then, 200 for an update."""
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        status, _ = self._exchange("PATCH", path, query=query, body=obj,
                                   content_type=APPLY_PATCH, dry_run=True)
        return status == 201

    def create(self, path: str, obj: dict, *, dry_run: bool = False,
               validation: str | None = None) -> dict:
        """POST to a collection path."""
        return self.request("POST", path, query=[("fieldManager", FIELD_MANAGER)]
                            + _validation(validation), body=obj, dry_run=dry_run)

    def replace(self, path: str, obj: dict, *, dry_run: bool = False,
                validation: str | None = None) -> dict:
        """PUT; ``metadata.resourceVersion`` in ``obj`` makes it a compare-and-swap (409)."""
        return self.request("PUT", path, query=[("fieldManager", FIELD_MANAGER)]
                            + _validation(validation), body=obj, dry_run=dry_run)

    def delete(self, path: str, *, uid: str | None = None) -> dict:
        """Background deletion; with ``uid``, only if it is still that very object."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions",
                                "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        return self.request("DELETE", path, body=body)

    def merge_patch(self, path: str, patch: dict) -> dict:
        return self.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    # --- transport --------------------------------------------------------------

    def request(self, method: str, path: str, *, query: Iterable[tuple[str, str]] = (),
                body: dict | None = None, content_type: str = "application/json",
                accept: str | None = None, dry_run: bool = False) -> dict:
        """One counted HTTP request; the decoded JSON body, or a fleetsync error."""
        return self._exchange(method, path, query=query, body=body, content_type=content_type,
                              accept=accept, dry_run=dry_run)[1]

    def _send(self, method: str, path: str, params: list[tuple[str, str]],
              headers: dict[str, str], body: dict | None) -> urllib3.BaseHTTPResponse:
        """One request through the client's own connection pool (its TLS, client
        certificate and proxy settings), with its default headers and credential; the
        body encoded once here and the answer read whole, never turned into models."""
        api, configuration = self.api, self.api.configuration
        headers = {**api.default_headers, **headers}
        if api.cookie:
            headers["Cookie"] = api.cookie
        api.update_params_for_auth(headers, params, ["BearerToken"], path, method, None)
        url = configuration.host + path
        if params:
            url += "?" + "&".join(f"{k}={quote(str(v))}" for k, v in params)
        encoded = None if body is None else json.dumps(body, default=_plain).encode()
        connect, read = self.timeout
        return api.rest_client.pool_manager.request(
            method, url, body=encoded, headers=headers, preload_content=True, retries=False,
            timeout=urllib3.Timeout(connect=connect, read=read))

    def _exchange(self, method: str, path: str, *, query: Iterable[tuple[str, str]] = (),
                  body: dict | None = None, content_type: str = "application/json",
                  accept: str | None = None, dry_run: bool = False) -> tuple[int, dict]:
        """``request``, with the HTTP status of its success."""
        params = list(query) + ([("dryRun", "All")] if dry_run else [])
        headers = {"Accept": accept or "application/json", "Content-Type": content_type}
        if self.impersonate:
            namespace, _, account = self.impersonate.partition("/")
            headers["Impersonate-User"] = f"system:serviceaccount:{namespace}:{account}"
        what = f"{method} {path}"
        self.counters.record(method, dry_run)
        self._last[0] = time.monotonic()
        try:
            response = self._send(method, path, params, headers, body)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            error = Unavailable(f"{what}: {unreachable_reason(exc)} ({type(exc).__name__})")
            error.unreachable = unreachable_reason(exc)
            raise error from exc
        data = response.data
        if not 200 <= response.status <= 299:
            raise classify(response.status, server_message(data), retry_after(response.headers),
                           what)
        try:
            return response.status, json.loads(data) if data else {}
        except ValueError as exc:     # a proxy's error page, a truncated body
            raise Unavailable(f"{what}: the response is not JSON: {data[:200]!r}") from exc
