"""The Kubernetes adapter and discovery: error mapping, request counting, resource paths."""

from __future__ import annotations

import socket
import threading

import pytest

from shared.errors import ApplyError, PermanentError, TransientError
from workers.apply.discovery import (PROCESS, Discovery, Resource, fetch, fetch_legacy, from_crd,
                                     parse_aggregated)
from workers.apply.kube import (Conflict, Counters, Invalid, Kube, NotFound, Refused,
                                Unavailable, classify, retry_after, server_message)
from workers.apply.refs import ObjectRef
from workers.apply.testing import configmap, crd, unique

# --- pure --------------------------------------------------------------------


@pytest.mark.parametrize("status,kind,permanent", [
    (404, NotFound, True), (409, Conflict, True), (422, Invalid, True), (400, Invalid, True),
    (401, Refused, True), (403, Refused, True), (429, Unavailable, False),
    (500, Unavailable, False), (503, Unavailable, False), (0, Unavailable, False)])
def test_http_statuses_map_to_fleetsync_errors(status, kind, permanent):
    error = classify(status, "the server said no", 7.0, "PATCH /api/v1/x")
    assert isinstance(error, kind)
    assert isinstance(error, PermanentError) is permanent
    assert isinstance(error, TransientError) is not permanent
    assert error.detail == "the server said no"
    assert str(error) == "PATCH /api/v1/x: the server said no"
    if not permanent:
        assert error.delay == 7.0


def test_an_undeclared_field_refused_with_a_500_is_permanent():
    message = ("failed to create typed patch object (ns/x; /v1, Kind=ConfigMap): .bogus: "
               "field not declared in schema")
    error = classify(500, message, None, "PATCH /api/v1/x")
    assert isinstance(error, Invalid) and isinstance(error, PermanentError)
    assert isinstance(classify(500, "etcd timed out", None, "PATCH /api/v1/x"), Unavailable)


def test_server_message_and_retry_after_are_read_from_the_response():
    body = b'{"kind":"Status","message":"configmaps \\"x\\" not found","code":404}'
    assert server_message(body) == 'configmaps "x" not found'
    assert server_message("plain text") == "plain text"
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"Retry-After": "soon"}) is None and retry_after(None) is None


def test_counters_separate_writes_from_dry_runs():
    counters = Counters()
    for method, dry in [("GET", False), ("PATCH", True), ("PATCH", False), ("DELETE", False)]:
        counters.record(method, dry)
    assert counters.snapshot() == {"requests": 4, "writes": 2, "dry_runs": 1}


def test_session_counters_add_up_to_the_clients_totals():
    total = Counters()
    first, second = Counters(parent=total), Counters(parent=total)
    first.record("GET", False)
    second.record("PATCH", False)
    assert first.snapshot()["requests"] == 1 and second.snapshot()["writes"] == 1
    assert total.snapshot() == {"requests": 2, "writes": 1, "dry_runs": 0}


def test_resource_paths():
    deploy = Resource("apps/v1", "Deployment", "deployments", True)
    ref = ObjectRef("apps/v1", "Deployment", "web", "web-app")
    assert deploy.path(ref) == "/apis/apps/v1/namespaces/web/deployments/web-app"
    ns = Resource("v1", "Namespace", "namespaces", False)
    assert ns.path(ObjectRef("v1", "Namespace", "", "web")) == "/api/v1/namespaces/web"


def test_aggregated_discovery_document_is_parsed():
    doc = {"kind": "APIGroupDiscoveryList", "items": [{"metadata": {"name": "apps"}, "versions": [
        {"version": "v1", "resources": [
            {"resource": "deployments", "scope": "Namespaced",
             "responseKind": {"group": "", "version": "", "kind": "Deployment"}},
            {"resource": "deployments/scale", "scope": "Namespaced",
             "responseKind": {"kind": "Scale"}}]}]}]}
    assert parse_aggregated(doc) == {
        ("apps/v1", "Deployment"): Resource("apps/v1", "Deployment", "deployments", True)}


def test_a_crd_says_which_kinds_it_defines():
    defined = from_crd(crd("example.com", "Widget", "widgets", scope="Cluster"))
    assert defined == {("example.com/v1", "Widget"):
                       Resource("example.com/v1", "Widget", "widgets", False)}


# --- against a real API server --------------------------------------------------

@pytest.fixture()
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


@pytest.mark.k8s
def test_apply_dry_run_get_delete_are_counted(kube):
    path = f"/api/v1/namespaces/default/configmaps/{unique('k')}"
    name = path.rsplit("/", 1)[1]
    obj = configmap(name, "default", a="1")
    kube.apply(path, obj, dry_run=True)
    assert kube.get_or_none(path) is None
    applied = kube.apply(path, obj)
    assert applied["metadata"]["managedFields"][0]["manager"] == "fleetsync"
    kube.delete(path, uid=applied["metadata"]["uid"])
    assert kube.counters.snapshot() == {"requests": 4, "writes": 2, "dry_runs": 1}


@pytest.mark.k8s
def test_a_yaml_date_and_a_selector_query_reach_the_server_as_the_official_client_sends_them(
        kube):
    import datetime

    name = unique("k")
    path = f"/api/v1/namespaces/default/configmaps/{name}"
    obj = configmap(name, "default")
    obj["data"] = {"day": datetime.date(2026, 12, 7)}            # an unquoted YAML date
    obj["metadata"]["labels"] = {"fleetsync.test/selector": name}
    assert kube.apply(path, obj)["data"] == {"day": "2026-12-07"}
    found = kube.list_items("/api/v1/namespaces/default/configmaps",
                            label_selector=f"fleetsync.test/selector in ({name}, other)")
    assert [item["metadata"]["name"] for item in found] == [name]
    kube.delete(path)


@pytest.mark.k8s
def test_server_errors_become_fleetsync_errors(kube):
    with pytest.raises(NotFound, match='configmaps "nope" not found'):
        kube.get("/api/v1/namespaces/default/configmaps/nope")
    name = unique("k")
    kube.create("/api/v1/namespaces/default/configmaps", configmap(name, "default"))
    with pytest.raises(Conflict, match="already exists"):
        kube.create("/api/v1/namespaces/default/configmaps", configmap(name, "default"))
    with pytest.raises(Conflict):        # a uid precondition that does not hold
        kube.delete(f"/api/v1/namespaces/default/configmaps/{name}", uid="not-the-uid")
    bad = configmap("Not_Valid", "default")
    with pytest.raises(Invalid, match="Not_Valid") as caught:
        kube.apply("/api/v1/namespaces/default/configmaps/Not_Valid", bad)
    assert isinstance(caught.value, ApplyError) and caught.value.status == 422


@pytest.mark.k8s
def test_refused_requests_are_permanent(dev_fleet):
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=dev_fleet.clusters["dev-1"])
    api_client.set_default_header("Impersonate-User", unique("nobody"))
    with pytest.raises(Refused, match="forbidden"):
        Kube(api_client).get("/api/v1/namespaces/default/configmaps")


def unreachable_kube(port: int, timeout: tuple[float, float]) -> Kube:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = False
    return Kube(client.ApiClient(configuration), timeout=timeout)


def test_connection_refused_is_transient():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]          # closed again: nothing listens
    with pytest.raises(Unavailable) as caught:
        unreachable_kube(port, (1.0, 1.0)).get("/api")
    assert isinstance(caught.value, TransientError) and caught.value.__cause__ is not None


def test_a_server_that_never_answers_times_out_as_transient():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
        with pytest.raises(Unavailable, match="(?i)timeout|timed out"):
            unreachable_kube(server.getsockname()[1], (1.0, 0.5)).get("/api")
        for conn in accepted:
            conn.close()


@pytest.mark.k8s
def test_discovery_is_aggregated_cached_and_matches_the_legacy_documents(kube):
    discovery = Discovery()
    catalog = discovery.catalog(kube)
    assert kube.counters.requests == 2                        # /api and /apis, nothing more
    discovery.catalog(kube)
    assert kube.counters.requests == 2                        # cached per server
    legacy = fetch_legacy(kube)
    for key in [("apps/v1", "Deployment"), ("v1", "ConfigMap"), ("v1", "Namespace"),
                ("networking.k8s.io/v1", "Ingress"),
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition")]:
        assert catalog[key] == legacy[key]
    assert fetch(kube) == catalog
    assert PROCESS is not discovery


@pytest.mark.k8s
def test_an_unknown_kind_costs_one_refresh_then_names_the_objects_with_a_hint(kube):
    discovery = Discovery()
    discovery.catalog(kube)
    before = kube.counters.requests
    gadget = ObjectRef("example.invalid/v1", "Gadget", "default", "g")
    with pytest.raises(ApplyError, match="Gadget/default/g"):
        discovery.resolve(kube, [gadget, ObjectRef("v1", "ConfigMap", "default", "c")])
    assert kube.counters.requests - before == 4    # the refresh, then /version and the CRD list


def test_only_the_adapter_imports_the_kubernetes_client():
    import ast
    from pathlib import Path

    import workers.apply

    package = Path(workers.apply.__file__).parent
    importers = set()
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] in ("kubernetes", "urllib3") for n in names):
                importers.add(module.name)
    assert importers == {"kube.py"}


@pytest.mark.k8s
def test_the_token_refresh_hook_runs_at_most_once_a_second(dev_fleet, monkeypatch):
    """The client asks the kubeconfig loader to refresh the token before every request,
    which costs a third of a request's CPU; fleetsync asks it at most once a second (the
    loader renews a token five minutes before it expires)."""
    from kubernetes.config import kube_config

    calls = []
    original = kube_config.KubeConfigLoader._set_config
    monkeypatch.setattr(kube_config.KubeConfigLoader, "_set_config",
                        lambda self, c: calls.append(1) or original(self, c))
    client = Kube.from_kubeconfig(dev_fleet.clusters["dev-1"], name="dev-1")
    loaded = len(calls)
    for _ in range(20):
        client.get("/api/v1/namespaces/default")
    assert len(calls) - loaded <= 2          # once, and once more if a second went by
    assert client.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"


@pytest.mark.k8s
def test_a_server_that_stops_answering_costs_one_timeout_per_request(dev_fleet, tmp_path):
    """Behind a proxy that stops forwarding (a hung API server: connections are accepted,
    nothing is answered), each request is tried once and says which timeout expired: a
    pooled connection's read timeout, then a new connection's handshake (connect timeout)."""
    import time
    from pathlib import Path

    import yaml

    from tests.support.slowproxy import SlowProxy

    original = Path(dev_fleet.clusters["dev-1"])
    proxy = SlowProxy(yaml.safe_load(original.read_text())["clusters"][0]["cluster"]["server"],
                      0.0)
    kube = Kube.from_kubeconfig(str(proxy.kubeconfig(original, tmp_path / "hung.yaml")),
                                name="dev-1")
    kube.timeout = (1.0, 2.0)
    try:
        kube.get("/api/v1/namespaces/default")              # one pooled connection
        proxy.stop_forwarding()
        for reason, seconds in (("timed out after 2 s", 2.0), ("timed out after 1 s", 1.0)):
            opened, started = proxy.connections, time.monotonic()
            with pytest.raises(Unavailable) as caught:
                kube.get("/api/v1/namespaces/default")
            took = time.monotonic() - started
            assert proxy.connections - opened <= 1, "urllib3 retried with new connections"
            assert took < seconds + 1.0, f"{took:.1f} s: retried under the adapter"
            assert caught.value.unreachable == reason, caught.value
        proxy.start_forwarding()
        assert kube.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
    finally:
        proxy.close()
        kube.close()
