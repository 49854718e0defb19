"""``fleetsync preview`` end to end: real Git branches, real workers, two real API servers.

One fleet for the module, synced once at ``main``: ``web`` has an overlay per cluster
(``web/<cluster>``), ``other`` and ``vault`` (a Secret) are the same everywhere,
``locked`` may use its own namespace only. Each test previews one branch through the
CLI and the workers and reads the report; the last one proves that nothing was
written: resourceVersions, unit statuses, the source's revision and the API servers'
own write counters are as they were.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from typing import Any

import pytest
import redis

from tests.support.stack import ROOT, Stack, configmap

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

CLUSTERS = ("dev-1", "dev-2")
SECRET_NOW, SECRET_NEXT = "pw-now-6c1e", "pw-next-9f3a77"
RESOURCES = {"configmaps", "secrets", "deployments", "namespaces"}


def _ns(suffix: str, tag: str) -> str:
    return f"pv{suffix}-{tag}"


def _namespace(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def _deployment(ns: str, replicas: int) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}})


def _secret(ns: str, password: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "metadata": {"name": "creds", "namespace": ns},
                       "stringData": {"password": password}})


def _write_main(s: Stack, sx: str) -> None:
    for cluster in CLUSTERS:
        ns = _ns(sx, "web")
        s.repo.write(f"web/{cluster}/ns.yaml", _namespace(ns))
        s.repo.write(f"web/{cluster}/config.yaml", configmap("settings", ns, {"value": "one"}))
        s.repo.write(f"web/{cluster}/deploy.yaml", _deployment(ns, 2))
    s.repo.write("other/ns.yaml", _namespace(_ns(sx, "other")))
    s.repo.write("other/config.yaml", configmap("settings", _ns(sx, "other"), {"v": "1"}))
    s.repo.write("other/extra.yaml", configmap("extra", _ns(sx, "other"), {"v": "1"}))
    s.repo.write("vault/ns.yaml", _namespace(_ns(sx, "vault")))
    s.repo.write("vault/secret.yaml", _secret(_ns(sx, "vault"), SECRET_NOW))
    s.repo.write("locked/ns.yaml", _namespace(_ns(sx, "locked")))
    s.repo.write("locked/config.yaml", configmap("settings", _ns(sx, "locked"), {"v": "1"}))
    s.repo.write("gold/ns.yaml", _namespace(_ns(sx, "gold")))
    s.repo.write("gold/config.yaml", configmap("settings", _ns(sx, "gold"), {"v": "1"}))


def _spec(s: Stack, sx: str, gold: str = "") -> str:
    """The fleet spec; ``gold``: the cluster labelled ``tier: gold`` (none at first)."""
    lines = ["sources:", "  - name: git", f"    url: {s.repo.bare_url()}", "    branch: main",
             "    interval: 3600s", "clusters:"]
    for name in CLUSTERS:
        labels = "{team: t, tier: gold}" if name == gold else "{team: t}"
        lines += [f"  - name: {name}", f"    kubeconfig: {s.kubeconfigs[name]}",
                  f"    labels: {labels}", "    interval: 3600s"]
    lines += ["applications:", "  - name: gold", "    source: git", "    path: gold",
              "    clusters: {matchLabels: {tier: gold}}", "    wait: false"]
    for app, path, extra in (("web", "web/${cluster_name}", []), ("other", "other", []),
                             ("vault", "vault", []),
                             ("locked", "locked", [f"    allowedNamespaces: [{_ns(sx, 'locked')}]"])):
        lines += [f"  - name: {app}", "    source: git", f"    path: {path}",
                  "    clusters: {matchLabels: {team: t}}", "    prune: true", "    wait: false",
                  *extra]
    return "\n".join(lines) + "\n"


def _branch(s: Stack, name: str, change) -> str:
    s.repo.switch("main")
    s.repo.branch(name)
    change()
    sha = s.repo.commit(f"{name}: preview me")
    s.repo.switch("main")
    s.repo.push()
    return sha


@pytest.fixture(scope="module")
def fleet(dev_fleet, redis_url, tmp_path_factory):
    from tests.conftest import new_redis_db

    sx = uuid.uuid4().hex[:6]
    s = Stack(tmp_path_factory.mktemp("preview"), new_redis_db(redis_url), dict(dev_fleet.clusters),
              app="web")
    s.repo.remove("app")
    _write_main(s, sx)
    main = s.repo.commit("fleet at main")
    s.repo.push()
    s.spec.write_text(_spec(s, sx))
    s.start_worker("pv")
    try:
        for app in ("web", "other", "vault", "locked"):
            done = cli(s, "sync", app, "--wait", "--timeout", "120")
            assert done.returncode == 0, done.stdout + done.stderr
        yield {"stack": s, "sx": sx, "main": main}
    finally:
        s.stop()


def cli(s: Stack, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT,
                          env=s.env(), capture_output=True, text=True, timeout=timeout)


def preview(s: Stack, ref: str, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    done = cli(s, "preview", "--source", "git", "--ref", ref, "-o", "json", *extra)
    assert done.returncode in (0, 1, 2), done.stderr
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def by_unit(units: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(u["app"], u["cluster"]): u for u in units}


def write_counts(kubeconfig: str) -> Counter:
    """The API server's own request counters for the kinds the units hold, by verb and
    dry-run (its ``apiserver_request_total``)."""
    from kubernetes import config

    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        conf = api.configuration
        headers = {"Authorization": conf.api_key.get("BearerToken")
                   or conf.api_key.get("authorization", "")}
        response = api.rest_client.request("GET", f"{conf.host}/metrics", headers=headers)
        text = (response.data if isinstance(response.data, bytes)
                else response.read()).decode()
    finally:
        api.close()
    counts: Counter = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels, _, value = line.rpartition(" ")
        fields = dict(part.split("=", 1) for part in labels[len("apiserver_request_total{"):-1]
                      .replace('"', "").split(","))
        if fields.get("resource") in RESOURCES and fields.get("component") == "apiserver":
            counts[(fields.get("verb"), fields.get("dry_run"))] += int(float(value))
    return counts


def memos(client: Any, revision: str) -> dict[str, str]:
    """The render each unit is remembered by at ``revision`` (what its runs apply)."""
    return {k: client.get(k) for k in client.scan_iter(f"fleetsync:rendered:*:{revision}:*")}


def live_versions(fleet_: dict) -> dict[str, str]:
    from kubernetes import client, config

    found = {}
    for cluster in CLUSTERS:
        api = config.new_client_from_config(config_file=fleet_["stack"].kubeconfigs[cluster])
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        for tag in ("web", "other", "vault", "locked"):
            ns = _ns(fleet_["sx"], tag)
            for cm in core.list_namespaced_config_map(ns).items:
                found[f"{cluster}/cm/{ns}/{cm.metadata.name}"] = cm.metadata.resource_version
            for sec in core.list_namespaced_secret(ns).items:
                found[f"{cluster}/secret/{ns}/{sec.metadata.name}"] = sec.metadata.resource_version
            for dep in apps.list_namespaced_deployment(ns).items:
                found[f"{cluster}/deploy/{ns}/{dep.metadata.name}"] = dep.metadata.resource_version
        api.close()
    return found


@pytest.fixture(scope="module")
def before(fleet):
    s = fleet["stack"]
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    state = {"versions": live_versions(fleet),
             "writes": {c: write_counts(s.kubeconfigs[c]) for c in CLUSTERS},
             "statuses": {k: client.hgetall(k) for k in client.scan_iter("fleetsync:status:*")},
             "memos": memos(client, fleet["main"]),
             "source": client.hget("fleetsync:source:git", "revision")}
    client.close()
    return state


def test_a_branch_changing_one_overlay_reports_exactly_its_cluster(fleet, before):
    s, sx = fleet["stack"], fleet["sx"]

    def change() -> None:
        s.repo.write("web/dev-1/config.yaml", configmap("settings", _ns(sx, "web"), {"value": "two"}))
        s.repo.write("web/dev-1/deploy.yaml", _deployment(_ns(sx, "web"), 3))

    sha = _branch(s, "overlay", change)
    dry_runs = {c: write_counts(s.kubeconfigs[c]) for c in CLUSTERS}
    code, units, _ = preview(s, "overlay")
    assert code == 1
    found = by_unit(units)
    assert len(found) == 8
    changed = found[("web", "dev-1")]
    assert changed["outcome"] == "changed" and changed["revision"] == sha
    assert changed["base_revision"] == fleet["main"]
    fields = {(o["kind"], o["action"]): o["fields"] for o in changed["objects"]}
    assert fields == {("ConfigMap", "update"): ["data.value"],
                      ("Deployment", "update"): ["spec.replicas"]}
    assert {k for k, u in found.items() if u["outcome"] != "unchanged"} == {("web", "dev-1")}
    after = {c: write_counts(s.kubeconfigs[c]) for c in CLUSTERS}
    spent = {c: sum(n for (verb, dry), n in (after[c] - dry_runs[c]).items() if dry == "All")
             for c in CLUSTERS}
    assert spent["dev-1"] >= 2 and spent["dev-2"] == 0, spent   # unchanged: no dry-run

    text = cli(s, "preview", "--source", "git", "--ref", "overlay")
    assert text.returncode == 1, text.stderr
    assert "web:\n  dev-1: changed" in text.stdout
    assert "~ Deployment/" in text.stdout and "(spec.replicas)" in text.stdout
    assert "8 units: 1 change (1 apps, 1 clusters), 0 refused, 0 failed, 7 unchanged" in text.stdout


def test_a_pinned_revision_against_a_base_ref(fleet, before):
    """``--revision SHA --base REF``: the commit as given, against the base named (here the
    overlay branch against itself: nothing changes); ``--no-wait`` answers the id."""
    s = fleet["stack"]
    sha = s.repo._git("rev-parse", "overlay").strip()
    done = cli(s, "preview", "--source", "git", "--revision", sha[:12], "--base", "overlay",
               "-o", "json")
    assert done.returncode == 0, done.stderr
    units = json.loads(done.stdout)
    assert len(units) == 8 and {u["outcome"] for u in units} == {"unchanged"}
    assert {(u["revision"], u["base_revision"]) for u in units} == {(sha, sha)}
    queued = cli(s, "preview", "--source", "git", "--ref", "overlay", "--no-wait")
    assert queued.returncode == 0 and len(queued.stdout.strip()) == 12, queued.stderr


def test_a_deleted_object_is_reported_as_a_prune(fleet, before):
    s = fleet["stack"]
    _branch(s, "prune", lambda: s.repo.remove("other/extra.yaml"))
    code, units, _ = preview(s, "prune", "--app", "other")
    assert code == 1
    found = by_unit(units)
    assert set(found) == {("other", "dev-1"), ("other", "dev-2")}
    for unit in found.values():
        assert unit["outcome"] == "changed"
        assert [(o["kind"], o["name"], o["action"]) for o in unit["objects"]] == \
            [("ConfigMap", "extra", "prune")]


def test_a_label_in_the_candidate_spec_adds_the_unit_its_selector_now_matches(fleet, before):
    """The fleet spec is not in Git: a targeting change is previewed with ``--spec``."""
    s, sx = fleet["stack"], fleet["sx"]
    candidate = s.tmp / "candidate-fleet.yaml"
    candidate.write_text(_spec(s, sx, gold="dev-2"))
    for local in ((), ("--local",)):
        code, units, _ = preview(s, "main", "--spec", str(candidate), *local)
        assert code == 1
        found = by_unit(units)
        added = found[("gold", "dev-2")]
        assert added["outcome"] == "added", added
        assert sorted((o["kind"], o["action"]) for o in added["objects"]) == \
            [("ConfigMap", "create"), ("Namespace", "create")]
        assert ("gold", "dev-1") not in found
        assert {u["outcome"] for k, u in found.items() if k[0] != "gold"} == {"unchanged"}


def test_an_invalid_object_and_a_policy_violation_are_refused_by_name(fleet, before):
    s, sx = fleet["stack"], fleet["sx"]

    def change() -> None:
        s.repo.write("web/dev-2/deploy.yaml", _deployment(_ns(sx, "web"), -1))
        s.repo.write("locked/stray.yaml", configmap("stray", "default", {"v": "1"}))

    _branch(s, "refusals", change)
    code, units, _ = preview(s, "refusals")
    assert code == 2
    found = by_unit(units)
    invalid = found[("web", "dev-2")]
    assert invalid["outcome"] == "refused"
    assert [(o["kind"], o["name"], o["action"]) for o in invalid["objects"]] == \
        [("Deployment", "web", "refused")]
    assert "replicas" in invalid["objects"][0]["message"]
    for cluster in CLUSTERS:
        locked = found[("locked", cluster)]
        assert locked["outcome"] == "refused"
        assert [(o["kind"], o["namespace"], o["name"]) for o in locked["objects"]] == \
            [("ConfigMap", "default", "stray")]
        assert "allowedNamespaces" in locked["objects"][0]["message"]
    assert found[("web", "dev-1")]["outcome"] == "unchanged"


def test_a_changed_secret_is_reported_without_its_value_anywhere(fleet, before):
    s, sx = fleet["stack"], fleet["sx"]
    _branch(s, "secret", lambda: s.repo.write("vault/secret.yaml", _secret(_ns(sx, "vault"),
                                                                             SECRET_NEXT)))
    code, units, stderr = preview(s, "secret")
    assert code == 1
    found = by_unit(units)
    for cluster in CLUSTERS:
        unit = found[("vault", cluster)]
        assert unit["outcome"] == "changed"
        [obj] = unit["objects"]
        assert (obj["kind"], obj["action"]) == ("Secret", "update") and obj["fields"]
    text = cli(s, "preview", "--source", "git", "--ref", "secret")
    client = redis.Redis.from_url(s.redis_url)
    results = b"".join(client.get(k) or b"" for k in client.scan_iter("celery-task-meta-*"))
    stored = b"".join(b"".join(client.lrange(k, 0, -1)) for k in
                      client.scan_iter("fleetsync:preview:*:units"))
    client.close()
    logs = "".join(p.read_text(errors="replace") for p in s.tmp.glob("*.log"))
    encoded = base64.b64encode(SECRET_NEXT.encode()).decode()
    for where, blob in (("json", json.dumps(units)), ("text", text.stdout + text.stderr),
                        ("stderr", stderr), ("results", results.decode(errors="replace")),
                        ("records", stored.decode(errors="replace")), ("logs", logs)):
        assert SECRET_NEXT not in blob and encoded not in blob, where
    assert results, "the preview's task results are in the result backend"


def test_a_ref_that_does_not_fetch_fails_every_unit_with_why(fleet, before):
    s = fleet["stack"]
    code, units, _ = preview(s, "no-such-branch")
    assert code == 2
    assert len(units) == 8 and {u["outcome"] for u in units} == {"failed"}
    assert all("no-such-branch" in u["message"] for u in units)


def test_a_part_sent_by_anyone_but_a_worker_is_refused(fleet, before):
    """``fleetsync.preview_cluster`` is signed like the internal stages: unsigned, it does
    nothing (not even count itself done)."""
    from shared import tasks_api
    from shared.celery_app import make_app
    from shared.settings import Settings
    from shared.state import previews

    s = fleet["stack"]
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    pid = previews.create(client, source="git", ref="main")["id"]
    previews.set_total(client, pid, 1)
    app = make_app(Settings(redis_url=s.redis_url))
    try:
        answer = app.send_task(tasks_api.PREVIEW_CLUSTER, args=[pid, "dev-1"],
                               kwargs={"units": ["web"]}).get(timeout=60)
    finally:
        app.close()
    assert "unsigned" in answer["refused"]
    record = previews.load(client, pid)
    client.close()
    assert record and record["done"] == 0 and record["units"] == []


def test_nothing_was_written_anywhere(fleet, before):
    s = fleet["stack"]
    assert live_versions(fleet) == before["versions"]
    for cluster in CLUSTERS:
        writes = write_counts(s.kubeconfigs[cluster]) - before["writes"][cluster]
        real = {k: n for k, n in writes.items()
                if k[0] in ("POST", "PUT", "PATCH", "DELETE", "APPLY") and k[1] != "All"}
        assert not real, (cluster, real)
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    statuses = {k: client.hgetall(k) for k in client.scan_iter("fleetsync:status:*")}
    assert statuses == before["statuses"]
    now = memos(client, fleet["main"])      # (the unit --spec added has a spec hash of its own)
    assert len(before["memos"]) == 8 and {k: now.get(k) for k in before["memos"]} == before["memos"]
    assert client.hget("fleetsync:source:git", "revision") == before["source"] == fleet["main"]
    assert client.zcard("fleetsync:previews") >= 4
    client.close()
