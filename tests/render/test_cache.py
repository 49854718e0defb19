"""The render cache against a real Redis, and render collapse across a fleet."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest
import redis
import zstandard

from devtools.tutorial import write_tutorial
from shared.errors import RenderError, TransientError
from shared.spec.model import Application, Cluster, Selector
from workers.render import kustomize
from workers.render.engine import render, render_cached
from workers.render.cache import PREFIX, RenderCache, render_key

OBJECTS = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b" * 500}}]


class Counting:
    """A builder that counts its calls (and can be slow, or fail)."""

    def __init__(self, result: Any = OBJECTS, delay: float = 0.0, error: Exception | None = None) -> None:
        self.calls = 0
        self.result, self.delay, self.error = result, delay, error
        self.lock = threading.Lock()

    def __call__(self) -> Any:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.result


def app(path: str = "clusters/production", **kw: Any) -> Application:
    return Application(name="platform", source="platform", path=path, clusters=Selector(names=()), **kw)


# --- keys (pure) -----------------------------------------------------------------------

def test_render_key_is_canonical() -> None:
    key = render_key("abc", "clusters/x", {"a": "1", "b": "2"}, "r1", "web")
    assert key == render_key("abc", "clusters/x", {"b": "2", "a": "1"}, "r1", "web")
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize("change", [
    ("abd", "clusters/x", {"a": "1"}, "r1", "web"),
    ("abc", "clusters/y", {"a": "1"}, "r1", "web"),
    ("abc", "clusters/x", {"a": "2"}, "r1", "web"),
    ("abc", "clusters/x", {"a": "1"}, "r2", "web"),
    ("abc", "clusters/x", {"a": "1"}, "r1", None),
])
def test_render_key_changes_with_every_input(change: tuple) -> None:
    assert render_key(*change) != render_key("abc", "clusters/x", {"a": "1"}, "r1", "web")


# --- the cache ---------------------------------------------------------------------------

def test_put_stores_compressed_value_with_ttl(redis_client: redis.Redis) -> None:
    cache = RenderCache(redis_client, ttl_seconds=300)
    cache.put("k1", OBJECTS)
    blob = redis_client.get(PREFIX + "k1")
    assert blob.startswith(b"\x28\xb5\x2f\xfd")  # zstd frame magic
    assert len(blob) < 200
    assert 0 < redis_client.pttl(PREFIX + "k1") <= 300_000
    assert cache.get("k1") == OBJECTS
    assert cache.get("absent") is None


def test_a_final_entry_just_put_is_read_once_from_this_process_then_from_redis(
        redis_client: redis.Redis) -> None:
    """The apply that follows its render in the same task reads the entry from memory:
    the same JSON that was stored (a fresh copy), once; then Redis is the truth again."""
    cache, meta = RenderCache(redis_client, ttl_seconds=300), {"revision": "r1"}
    cache.put("final", OBJECTS, meta)
    redis_client.delete(PREFIX + "final")          # gone from Redis: still handed over once
    first = cache.get_entry("final")
    assert first == (OBJECTS, meta) and first[0] is not OBJECTS
    assert cache.get_entry("final") is None
    cache.put("raw", OBJECTS)                      # a build shared by clusters: no handoff
    redis_client.delete(PREFIX + "raw")
    assert cache.get_entry("raw") is None
    for n in range(10):                            # a few only, the newest
        cache.put(f"k{n}", OBJECTS, meta)
    assert len(cache._handoff) == 4 and "k9" in cache._handoff


def test_damaged_entry_is_a_miss(redis_client: redis.Redis) -> None:
    redis_client.set(PREFIX + "bad", b"not zstd")
    assert RenderCache(redis_client, 60).get("bad") is None


def test_hit_does_not_run_the_builder(redis_client: redis.Redis) -> None:
    cache, build = RenderCache(redis_client, 60), Counting()
    assert cache.get_or_render("k", build) == (OBJECTS, False)
    assert cache.get_or_render("k", build) == (OBJECTS, True)
    assert build.calls == 1
    assert not redis_client.exists(PREFIX + "k:lock")


def test_concurrent_identical_renders_build_once(redis_client: redis.Redis, redis_url: str) -> None:
    build, start = Counting(delay=0.3), threading.Barrier(8)

    def worker(_: int) -> tuple[Any, bool]:
        cache = RenderCache(redis.Redis.from_url(redis_url), 60, poll_seconds=0.02)
        start.wait()
        return cache.get_or_render("same", build)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert build.calls == 1
    assert all(objects == OBJECTS for objects, _ in results)
    assert sorted(hit for _, hit in results) == [False] + [True] * 7


def test_render_error_is_remembered_briefly(redis_client: redis.Redis) -> None:
    cache = RenderCache(redis_client, 60, error_ttl_seconds=5)
    build = Counting(error=RenderError("app: kustomize build failed: boom", obj="ConfigMap x"))
    for _ in range(3):
        with pytest.raises(RenderError, match="boom") as err:
            cache.get_or_render("broken", build)
    assert build.calls == 1 and err.value.obj == "ConfigMap x"
    assert 0 < redis_client.pttl(PREFIX + "broken:error") <= 5000
    assert not redis_client.exists(PREFIX + "broken")


def test_transient_error_is_not_remembered(redis_client: redis.Redis) -> None:
    cache, build = RenderCache(redis_client, 60), Counting(error=TransientError("timed out"))
    for _ in range(2):
        with pytest.raises(TransientError):
            cache.get_or_render("slow", build)
    assert build.calls == 2


def test_stuck_lock_holder_is_not_waited_for_forever(redis_client: redis.Redis) -> None:
    redis_client.set(PREFIX + "stuck:lock", "someone-else", px=60_000)
    cache, build = RenderCache(redis_client, 60, wait_seconds=0.2, poll_seconds=0.02), Counting()
    started = time.monotonic()
    assert cache.get_or_render("stuck", build) == (OBJECTS, False)
    assert time.monotonic() - started < 1.0 and build.calls == 1
    assert redis_client.get(PREFIX + "stuck:lock") == b"someone-else"  # not ours to release


def test_redis_failure_is_transient() -> None:
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(TransientError, match="render cache"):
        RenderCache(dead, 60).get("k")


# --- render_cached over the tutorial ----------------------------------------------------

@pytest.fixture()
def tutorial(tmp_path: Path) -> Path:
    try:
        kustomize.command()
    except RenderError as exc:
        pytest.skip(str(exc))
    write_tutorial(tmp_path)
    return tmp_path


@pytest.fixture()
def kustomize_runs(monkeypatch: pytest.MonkeyPatch) -> Counting:
    """Counts real kustomize builds: a spy around our own adapter, not a fake."""
    counter, real = Counting(), kustomize.build

    def build(*args: Any, **kw: Any) -> str:
        counter()
        return real(*args, **kw)

    monkeypatch.setattr(kustomize, "build", build)
    return counter


def test_render_cached_matches_render_and_stores_final_objects(
        redis_client: redis.Redis, tutorial: Path, kustomize_runs: Counting) -> None:
    cache, cluster = RenderCache(redis_client, 60), Cluster("production")
    objects, key, hit = render_cached(app(), cluster, tutorial, cache, "rev1", "platform")
    assert not hit and objects == render(app(), cluster, tutorial)
    assert cache.get(key) == objects
    again = render_cached(app(), cluster, tutorial, cache, "rev1", "platform")
    assert again == (objects, key, True)
    assert kustomize_runs.calls == 2  # the first render_cached, and the uncached render


def test_hundred_clusters_differing_in_name_run_kustomize_once(
        redis_client: redis.Redis, redis_url: str, tutorial: Path, kustomize_runs: Counting) -> None:
    def one(i: int) -> tuple[list[dict], str, bool]:
        cache = RenderCache(redis.Redis.from_url(redis_url), 60, poll_seconds=0.02)
        return render_cached(app(), Cluster(f"edge-{i:03}"), tutorial, cache, "rev1", "platform")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(100)))
    assert kustomize_runs.calls == 1
    assert sum(not hit for _, _, hit in results) == 1
    # ${cluster_name} is referenced, so each cluster has its own final objects and key
    assert len({key for _, key, _ in results}) == 100
    for i, (objects, _, _) in enumerate(results):
        monitoring = next(o for o in objects if o["metadata"]["name"] == "monitoring-config")
        assert monitoring["data"]["cluster"] == f"edge-{i:03}"


def test_unreferenced_variables_do_not_change_the_final_key(redis_client: redis.Redis,
                                                             tmp_path: Path) -> None:
    """The final entry is per cluster (a pull worker reads only its own cluster's); its
    digest depends only on the variables the documents use."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {size: '${size:=s}'}\n")
    cache = RenderCache(redis_client, 60)
    keys = [render_cached(app("app"), Cluster(f"c{i}", vars={"other": str(i)}), tmp_path, cache, "r")[1]
            for i in range(5)]
    assert [k.split("/")[0] for k in keys] == [f"c{i}" for i in range(5)]
    assert len({k.split("/")[1] for k in keys}) == 1
    sized, key, _ = render_cached(app("app"), Cluster("c", vars={"size": "xl"}), tmp_path, cache, "r")
    assert key.split("/")[1] not in {k.split("/")[1] for k in keys}
    assert sized[0]["data"] == {"size": "xl"}


def test_no_revision_means_no_caching(redis_client: redis.Redis, tutorial: Path,
                                      kustomize_runs: Counting) -> None:
    cache = RenderCache(redis_client, 60)
    for _ in range(2):
        _, _, hit = render_cached(app(), Cluster("production"), tutorial, cache, "")
        assert not hit
    assert kustomize_runs.calls == 2 and redis_client.dbsize() == 0


def test_render_error_through_render_cached_names_each_unit(redis_client: redis.Redis, tmp_path: Path,
                                                            kustomize_runs: Counting) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    cache = RenderCache(redis_client, 60)
    for name in ("a", "b", "c"):
        with pytest.raises(RenderError) as err:
            render_cached(app("app"), Cluster(name), tmp_path, cache, "rev9")
        assert err.value.unit == f"{name}/platform" and err.value.revision == "rev9"
        assert "missing.yaml" in err.value.message
    assert kustomize_runs.calls == 1


def test_raw_and_final_keys_differ_when_no_variable_is_used(tmp_path, redis_client):
    """A render that references no variable must not store its objects over its raw text."""
    from shared.spec.model import Application, Cluster, Selector
    from workers.render.engine import render_cached
    from workers.render.cache import RenderCache

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain, namespace: x}\ndata: {a: b}\n")
    app = Application("plain", "src", "app", Selector(names=("c",)))
    cache = RenderCache(redis_client, 60)
    objects, key, _ = render_cached(app, Cluster("c"), tmp_path, cache, "f" * 40, "src")
    assert cache.get(key) == objects
    again, key2, hit = render_cached(app, Cluster("c"), tmp_path, cache, "f" * 40, "src")
    assert hit and key2 == key and again == objects and again[0]["kind"] == "ConfigMap"
