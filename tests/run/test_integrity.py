"""Nothing in Redis can be read, replayed or forged into a cluster.

Real workers, beat and Flower on a real Redis, a bare control plane. A Secret and
a Deployment's environment in Git carry canaries; someone changes the environment
by hand. Then every value in Redis (decompressed where it is compressed), every
log line, every Celery result and Flower's API are searched for them. Then
Redis is attacked: a render entry is changed in place, apply and render tasks are
sent through Flower's API, and a genuine but old apply (signed with the workers'
key, as a captured message would be) is replayed.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid

import pytest
import redis
import zstandard

from tests.conftest import new_redis_db
from tests.support.stack import Stack, free_port

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
SECRET_CANARY = "canary-secret-" + uuid.uuid4().hex[:10]
ENV_CANARY = "canary-env-" + uuid.uuid4().hex[:10]
LIVE_CANARY = "canary-live-" + uuid.uuid4().hex[:10]
CANARIES = (SECRET_CANARY, ENV_CANARY, LIVE_CANARY)


def http(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                 method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def stack(dev_fleet, redis_url, tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("integrity"), new_redis_db(redis_url), dev_fleet.clusters)
    ns = s.namespace
    s.repo.write("app/secret.yaml", json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": ns},
        "stringData": {"password": SECRET_CANARY}}))
    s.repo.write("app/deployment.yaml", json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                     "name": "web", "image": "nginx:1.25",
                     "env": [{"name": "DB_PASSWORD", "value": ENV_CANARY}]}]}}}}))
    s.repo.commit("a secret and an environment")
    s.repo.push()
    s.write_spec(["dev-1"])
    s.start_worker("w1")
    s.start_beat()
    port = free_port()
    s.flower = f"http://127.0.0.1:{port}"
    flower = s._spawn("flower", ["flower", "--port", str(port)])
    s.wait("Flower up", lambda: _answers(s.flower) or flower.poll() is not None, timeout=60)
    s.wait("Ready", lambda: s.ready_at("dev-1", s.repo.head()), timeout=90)
    yield s
    s.stop()


def _answers(base: str) -> bool:
    try:
        http(f"{base}/api/workers?refresh=1")
        return True
    except OSError:
        return False


def redis_values(url: str) -> list[bytes]:
    """Every value in the database, decompressed where it is zstd-compressed."""
    client = redis.Redis.from_url(url)
    out: list[bytes] = []
    for key in client.scan_iter(count=500):
        kind = client.type(key)
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"hash":
            values = [x for kv in client.hgetall(key).items() for x in kv]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        for value in values:
            out.append(value)
            try:
                out.append(zstandard.ZstdDecompressor().decompress(value))
            except zstandard.ZstdError:
                pass
    return out


def leaks(blobs: list[bytes]) -> list[str]:
    found = []
    for canary in CANARIES:
        for form in (canary.encode(), base64.b64encode(canary.encode())):
            if any(form in blob for blob in blobs):
                found.append(canary)
    return found


def test_no_secret_value_in_redis_logs_results_or_flower(stack, kube_clients):
    from kubernetes import client

    apps = client.AppsV1Api(kube_clients["dev-1"])
    apps.patch_namespaced_deployment("web", stack.namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "web", "env": [{"name": "DB_PASSWORD", "value": LIVE_CANARY}]}]}}}})

    def corrected() -> bool:
        return any(e.get("drift") for e in stack.history("dev-1"))
    stack.wait("the changed environment corrected", corrected, timeout=60)
    entry = next(e for e in stack.history("dev-1") if e.get("drift"))
    (fields,) = entry["drift"].values()
    assert list(entry["drift"]) == [f"Deployment/{stack.namespace}/web"]
    assert fields[0].startswith("spec.template.spec.containers[web].env[DB_PASSWORD].value: "
                                "changed (by OpenAPI-Generator at ")       # who, not the value
    live = apps.read_namespaced_deployment("web", stack.namespace)
    assert live.spec.template.spec.containers[0].env[0].value == ENV_CANARY   # it was applied
    core = client.CoreV1Api(kube_clients["dev-1"])
    secret = core.read_namespaced_secret("db", stack.namespace)
    assert base64.b64decode(secret.data["password"]).decode() == SECRET_CANARY

    assert leaks(redis_values(stack.redis_url)) == [], "a canary is in Redis"
    logs = [p.read_bytes() for p in stack.tmp.glob("*.log")]
    assert leaks(logs) == [], "a canary is in a log"
    tasks = http(f"{stack.flower}/api/tasks")
    pages = [json.dumps(tasks).encode()] + [
        json.dumps(http(f"{stack.flower}/api/task/info/{task_id}")).encode()
        for task_id in list(tasks)[:50]]
    assert leaks(pages) == [], "a canary is in Flower's API"


def test_a_render_entry_changed_in_redis_is_refused_and_rendered_again(stack, kube_clients):
    from kubernetes import client

    client_ = redis.Redis.from_url(stack.redis_url)
    entries = [k for k in client_.scan_iter("fleetsync:render:*")
               if not k.endswith((b":lock", b":error", b":warnings"))]
    assert entries
    for key in entries:                         # flip one byte inside the ciphertext
        value = bytearray(client_.get(key) or b"")
        value[-5] ^= 0x01
        client_.set(key, bytes(value), keepttl=True)
    core = client.CoreV1Api(kube_clients["dev-1"])
    core.patch_namespaced_config_map("settings", stack.namespace, {"data": {"value": "hacked"}})
    stack.wait("the drift corrected from a fresh render", lambda: core.read_namespaced_config_map(
        "settings", stack.namespace).data["value"] == "one", timeout=90)
    log = (stack.tmp / "w1.log").read_text()
    assert "render cache entry refused" in log and "does not authenticate" in log


def test_flower_sends_only_sync_and_workers_refuse_unsigned_stages(stack, kube_clients):
    from kubernetes import client

    from shared.celery_app import make_app, send
    from shared.settings import Settings

    for name in ("fleetsync.apply", "fleetsync.render", "fleetsync.check_health",
                 "fleetsync.reconcile_cluster"):
        for route in ("async-apply", "apply", "send-task"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                http(f"{stack.flower}/api/task/{route}/{name}",
                     {"args": [stack.app, "dev-1", "0" * 64]})
            assert refused.value.code in (404, 500), (route, name, refused.value.code)
    flower_log = (stack.tmp / "flower.log").read_text()
    assert "fleetsync.apply cannot be sent from here; allowed: fleetsync.ping, fleetsync.sync" \
        in flower_log
    # with a broker credential, past Flower: the worker refuses what it did not sign
    celery = make_app(Settings(redis_url=stack.redis_url))
    try:
        send(celery, "fleetsync.apply", [stack.app, "dev-1", "0" * 64],
             {"run_id": uuid.uuid4().hex})
        send(celery, "fleetsync.render", [stack.app, "dev-1", "deadbeef"],
             {"run_id": uuid.uuid4().hex})
    finally:
        celery.close()
    stack.wait("both refused by the worker", lambda: (stack.tmp / "w1.log").read_text().count(
        "unsigned: only workers send this task") >= 2, timeout=60)
    assert all(e["result"] != "Refused" for e in stack.history("dev-1"))   # they did nothing
    core = client.CoreV1Api(kube_clients["dev-1"])
    assert core.read_namespaced_config_map("settings", stack.namespace).data["value"] == "one"


def test_an_old_render_replayed_with_a_valid_signature_is_refused_and_recorded(
        stack, kube_clients):
    from kubernetes import client

    from shared.celery_app import make_app, send
    from shared.settings import Settings
    from workers.sealing import SIGNATURE, Sealer

    old_rev = stack.repo.head()
    client_ = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    memo = next(client_.scan_iter(f"fleetsync:rendered:dev-1/{stack.app}:{old_rev}:*"))
    old_key = client_.get(memo)
    new_rev = stack.commit("value two", value="two")
    stack.wait("Ready at the new revision", lambda: stack.ready_at("dev-1", new_rev), timeout=90)

    sealer = Sealer.from_file(stack.tmp / "cache" / "keys" / "render.key")
    args = [stack.app, "dev-1", old_key]
    kwargs = {"run_id": uuid.uuid4().hex, "trigger": "api", "requested_at": time.time(),
              "attempt": 0, "waited": 0.0, "revision": old_rev}
    kwargs[SIGNATURE] = sealer.sign("fleetsync.apply", args, kwargs)
    celery = make_app(Settings(redis_url=stack.redis_url))
    try:
        send(celery, "fleetsync.apply", args, kwargs)
    finally:
        celery.close()

    def refused() -> bool:
        return any(e["result"] == "Refused" and e["revision"] == old_rev
                   and f"the source is at {new_rev[:12]}" in e["message"]
                   for e in stack.history("dev-1"))
    stack.wait("the replay refused and recorded", refused, timeout=60)
    stack.wait("Ready at the new revision again", lambda: stack.ready_at("dev-1", new_rev),
               timeout=60)
    core = client.CoreV1Api(kube_clients["dev-1"])
    assert core.read_namespaced_config_map("settings", stack.namespace).data["value"] == "two"
