"""A content-addressed render cache in Redis, and the collapse of identical renders.

Keys are sha256 digests of everything a render depends on (revision, path,
variables, renderer version, namespace), so an entry never needs invalidating:
a new revision is a new key, and old keys age out with their TTL. Values are
zstd-compressed JSON (manifests compress about tenfold), with what the entry was
rendered for (``meta``: revision, path, namespace, the variables it used), sealed
with the workers' key (``workers/sealing.py``): a Secret is never readable in
Redis, and an entry changed there, or moved under another key, does not open. It
is then a miss, logged and counted, and the render runs again.

When a fleet of workers asks for the same render at once (a new revision lands
on 100 clusters), ``get_or_render`` lets one of them build it under a short
Redis lock (``SET <key>:lock NX PX``) while the others poll for the result.
A waiter gives up waiting after ``wait_seconds`` and builds it itself: the
cache is an optimisation, never a dependency (DESIGN: durable truth).

Failures: a ``RenderError`` (permanent: the same input fails the same way) is
remembered for ``error_ttl_seconds`` (short, one minute by default) so that the
other 99 clusters get the message without running kustomize 99 more times; a
short TTL because a "permanent" kustomize failure of a remote base can still be
a network blip. Transient errors and anything else are never cached.

This is an adapter: Redis errors become ``TransientError``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any, Callable, Mapping

import redis
import zstandard

from shared.state import keys
from shared import metrics
from shared.errors import RenderError, TransientError
from shared.state.locks import Leases
from shared.logs import get_logger
from workers.sealing import Sealer, Tampered

log = get_logger("fleetsync.render.cache")

PREFIX = keys.RENDER_PREFIX
# Final entries this process put last, as the JSON it stored: the apply stage that runs
# right after its render in the same task (push mode) reads its entry from here once,
# not back from Redis. A few only: in pull mode the apply runs elsewhere.
HANDOFF = 4
Objects = list[dict[str, Any]]

def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def render_key(revision: str, path: str, variables: Mapping[str, str], renderer_version: str,
               namespace: str | None) -> str:
    """sha256 hex of a canonical JSON of everything a render depends on."""
    return hashlib.sha256(canonical_json({
        "revision": revision, "path": path, "variables": dict(variables),
        "renderer": renderer_version, "namespace": namespace,
    })).hexdigest()


def memo_key(unit: str, revision: str, spec_hash: str) -> str:
    """Where the render key of ``unit`` at this revision and spec is remembered while its
    render is cached: a reconcile then goes straight to apply (render is a pure function
    of these), and the cluster pass reads the render it judges by. The memo expires
    with the render cache entry."""
    return keys.rendered(unit, revision, spec_hash)


class RenderCache:
    """Renders by key in Redis, with TTL, and one builder per key at a time; and the
    memo of each unit's latest render key (``memo_key``, ``remember``)."""

    def __init__(self, redis_client: "redis.Redis", ttl_seconds: float, *,
                 lock_seconds: float = 120.0, wait_seconds: float = 90.0,
                 poll_seconds: float = 0.05, error_ttl_seconds: float = 60.0,
                 sealer: Sealer | None = None) -> None:
        """``sealer`` is the workers' key (always, in workers); without one entries are
        stored in the clear, which only tests of the cache's mechanics do."""
        self.redis = redis_client
        self.sealer = sealer
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self.lock_ms = max(1, int(lock_seconds * 1000))
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.error_ttl_ms = max(1, int(error_ttl_seconds * 1000))
        self._leases = Leases(redis_client)
        self._handoff: dict[str, bytes] = {}

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.RedisError as exc:
            raise TransientError(f"render cache: {what} failed: {exc}") from exc

    def remember(self, unit: str, revision: str, spec_hash: str, key: str) -> None:
        """Remember ``key`` as the render of ``unit`` at ``revision`` and ``spec_hash``."""
        self._call("remember", lambda: self.redis.set(memo_key(unit, revision, spec_hash), key,
                                                      px=self.ttl_ms))

    def get(self, key: str) -> Objects | None:
        """The objects stored under ``key``, or None (absent, expired or unreadable)."""
        entry = self.get_entry(key)
        return None if entry is None else entry[0]

    def get_entry(self, key: str) -> tuple[Any, dict[str, Any]] | None:
        """``(value, meta)`` stored under ``key``, or None (absent, expired, damaged, or
        not sealed by a key of this worker: then it is logged and counted). An entry this
        process has just put is read from memory, once (``HANDOFF``)."""
        made = self._handoff.pop(key, None)
        if made is not None:
            return self._decoded(made)
        return self._entry(self._read(PREFIX + key))

    def get_entries(self, keys: list[str]) -> list[tuple[Any, dict[str, Any]] | None]:
        """``get_entry`` of each key, in one round trip."""
        if not keys:
            return []
        blobs = self._call("get", lambda: self.redis.mget([PREFIX + k for k in keys]))
        return [self._entry(self._opened(PREFIX + k, blob)) for k, blob in zip(keys, blobs)]

    def _entry(self, plain: bytes | None) -> tuple[Any, dict[str, Any]] | None:
        if plain is None:
            return None
        try:
            return self._decoded(zstandard.ZstdDecompressor().decompress(plain))
        except zstandard.ZstdError:
            return None  # a damaged entry is a miss; the put after the render replaces it

    def _decoded(self, text: bytes) -> tuple[Any, dict[str, Any]] | None:
        try:
            entry = json.loads(text)
        except ValueError:
            return None
        if not isinstance(entry, dict) or "o" not in entry:
            return None
        return entry["o"], entry.get("m") or {}

    def exists(self, key: str) -> bool:
        return bool(self._call("exists", lambda: self.redis.exists(PREFIX + key)))

    def put(self, key: str, objects: Any, meta: dict[str, Any] | None = None) -> None:
        text = canonical_json({"m": meta or {}, "o": objects})
        blob = self._seal(PREFIX + key, zstandard.ZstdCompressor(level=3).compress(text))
        self._call("put", lambda: self.redis.set(PREFIX + key, blob, px=self.ttl_ms))
        if meta:                       # a final entry: the apply of this run may follow here
            self._handoff[key] = text
            while len(self._handoff) > HANDOFF:
                self._handoff.pop(next(iter(self._handoff)), None)

    def failure(self, key: str) -> RenderError | None:
        """The RenderError remembered for ``key``, if any."""
        return self._failure(self._read(PREFIX + key + ":error"))

    def _failure(self, raw: bytes | None) -> RenderError | None:
        if raw is None:
            return None
        try:
            saved = json.loads(raw)
        except ValueError:
            return None
        return RenderError(saved["message"], obj=saved.get("obj"))

    def remember_failure(self, key: str, exc: RenderError) -> None:
        value = self._seal(PREFIX + key + ":error",
                           canonical_json({"message": exc.message, "obj": exc.obj}))
        self._call("put", lambda: self.redis.set(PREFIX + key + ":error", value, px=self.error_ttl_ms))

    def _seal(self, name: str, plain: bytes) -> bytes:
        return plain if self.sealer is None else self.sealer.seal(plain, name.encode())

    def _read(self, name: str) -> bytes | None:
        return self._opened(name, self._call("get", lambda: self.redis.get(name)))

    def _opened(self, name: str, blob: bytes | None) -> bytes | None:
        if blob is None or self.sealer is None:
            return blob
        try:
            return self.sealer.open(blob, name.encode())
        except Tampered as exc:
            log.error("render cache entry refused", key=name, why=str(exc))
            metrics.refused.labels("render_entry").inc()
            return None

    def _lookup(self, key: str) -> Objects | None:
        """The cached objects, or None; raises the remembered failure. One round trip."""
        failed, built = self._call("get", lambda: self.redis.mget(
            [PREFIX + key + ":error", PREFIX + key]))
        error = self._failure(self._opened(PREFIX + key + ":error", failed))
        if error is not None:
            raise error
        entry = self._entry(self._opened(PREFIX + key, built))
        return None if entry is None else entry[0]

    def _build(self, key: str, fn: Callable[[], Objects]) -> Objects:
        try:
            objects = fn()
        except RenderError as exc:
            self.remember_failure(key, exc)
            raise
        self.put(key, objects)
        return objects

    def _acquire(self, key: str, token: str) -> bool:
        return bool(self._call("lock", lambda: self._leases.acquire(PREFIX + key + ":lock", token,
                                                                     self.lock_ms)))

    def _build_locked(self, key: str, token: str, fn: Callable[[], Objects],
                      look: bool = True) -> tuple[Objects, bool]:
        """Build under the lock; ``look``: first look again, for an entry built between our
        miss and our lock (not when the lock was free at our first look: a build that
        finished in that moment is only made twice, equal)."""
        try:
            cached = self._lookup(key) if look else None
            if cached is not None:
                return cached, True
            return self._build(key, fn), False
        finally:
            self._call("unlock", lambda: self._leases.release(PREFIX + key + ":lock", token))

    def get_or_render(self, key: str, fn: Callable[[], Objects]) -> tuple[Objects, bool]:
        """``(objects, hit)``: from the cache, or built by ``fn`` once fleet-wide.

        Errors from ``fn`` propagate; a ``RenderError`` is also remembered briefly.
        """
        cached = self._lookup(key)
        if cached is not None:
            return cached, True
        token = uuid.uuid4().hex
        deadline, first = time.monotonic() + self.wait_seconds, True
        while time.monotonic() < deadline:
            if self._acquire(key, token):
                return self._build_locked(key, token, fn, look=not first)
            first = False
            time.sleep(self.poll_seconds)
            cached = self._lookup(key)
            if cached is not None:
                return cached, True
        return self._build(key, fn), False  # the holder is stuck: do not wait forever
