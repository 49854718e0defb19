"""One settings object, built once from the environment and passed on.

Nothing deeper in the code reads ``os.environ``: tasks, the CLI and tests build
a ``Settings`` at their edge and hand it down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping

from shared import toolcache

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fleetsync"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetsync"


@dataclass(frozen=True)
class Settings:
    redis_url: str = DEFAULT_REDIS_URL
    fleet_path: str | None = None
    cache_dir: Path = Path()                 # git mirrors and checkouts of this host
    lock_ttl: float = 60.0                   # a sync unit's lock lives this long unless renewed
    task_time_limit: float = 900.0           # the longest a task may run (hard limit)
    render_cache_ttl: float = 24 * 3600.0
    history_size: int = 50
    queue_per_cluster: bool = False          # route apply to apply.<cluster> (pull mode)
    split_stages: bool = False               # push mode too: render and apply as two tasks
    health_poll: float = 2.0                 # seconds before a rollout's first health look
    log_level: str = "INFO"
    metrics_port: int | None = None          # workers expose Prometheus metrics here
    metrics_dir: str | None = None           # prometheus multiprocess directory
    flower_url: str | None = None            # Flower as operators open it: the CLI links tasks there
    metrics_addr: str = "127.0.0.1"          # where workers' metrics listen (0.0.0.0 in a Pod)
    cache_key_file: str | None = None        # workers' key for render entries (AEAD); see workers/render/cache.py
    allow_local_sources: bool = False        # local paths and file:// sources (demo, tests)
    sops_age_key_file: str | None = None     # age identities that decrypt SOPS files at render
    sops_bin: str | None = None              # the sops binary (default: sops on PATH, then tools_dir)
    sops_key_types: tuple[str, ...] = ("age",)   # key types a SOPS file may name (sops calls them)
    sops_tmpfs: str | None = None            # tmpfs for kustomize's decrypted copies (default /dev/shm)
    helm_bin: str | None = None              # the helm binary (default: helm on PATH, then tools_dir)
    tools_dir: Path | None = None            # `dev build`'s helm and sops, after PATH (shared/toolcache.py)
    worker_cluster: str | None = None        # a pull worker's one cluster (fleetsync worker --cluster)

    @property
    def apply_after_render(self) -> bool:
        """Push mode: the worker that rendered a run applies it in the same task (one task,
        one Flower row per run); pull mode keeps the split, the apply goes to the cluster."""
        return not (self.queue_per_cluster or self.split_stages)

    @property
    def visibility_timeout(self) -> float:
        """Redis redelivers an unacked task after this: longer than the longest task."""
        return self.task_time_limit * 2 + 60

    def with_(self, **changes: object) -> "Settings":
        return replace(self, **changes)  # type: ignore[arg-type]


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``FLEETSYNC_*`` variables; unknown ones are ignored."""
    env = os.environ if env is None else env
    port = env.get("FLEETSYNC_METRICS_PORT")
    return Settings(
        redis_url=env.get("FLEETSYNC_REDIS_URL", DEFAULT_REDIS_URL),
        fleet_path=env.get("FLEETSYNC_FLEET") or None,
        cache_dir=Path(env.get("FLEETSYNC_CACHE_DIR") or _default_cache_dir()),
        lock_ttl=float(env.get("FLEETSYNC_LOCK_TTL", 60)),
        task_time_limit=float(env.get("FLEETSYNC_TASK_TIME_LIMIT", 900)),
        render_cache_ttl=float(env.get("FLEETSYNC_RENDER_CACHE_TTL", 24 * 3600)),
        history_size=int(env.get("FLEETSYNC_HISTORY_SIZE", 50)),
        queue_per_cluster=env.get("FLEETSYNC_QUEUE_PER_CLUSTER", "") in ("1", "true", "yes"),
        split_stages=env.get("FLEETSYNC_SPLIT_STAGES", "") in ("1", "true", "yes"),
        health_poll=min(60.0, max(0.5, float(env.get("FLEETSYNC_HEALTH_POLL") or 2.0))),
        log_level=env.get("FLEETSYNC_LOG_LEVEL", "INFO").upper(),
        metrics_port=int(port) if port else None,
        metrics_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        flower_url=env.get("FLEETSYNC_FLOWER_URL", "").rstrip("/") or None,
        metrics_addr=env.get("FLEETSYNC_METRICS_ADDR") or "127.0.0.1",
        cache_key_file=env.get("FLEETSYNC_CACHE_KEY_FILE") or None,
        allow_local_sources=env.get("FLEETSYNC_ALLOW_LOCAL_SOURCES", "") in ("1", "true", "yes"),
        sops_age_key_file=env.get("FLEETSYNC_SOPS_AGE_KEY_FILE") or None,
        sops_bin=env.get("FLEETSYNC_SOPS_BIN") or None,
        sops_key_types=_names(env.get("FLEETSYNC_SOPS_KEY_TYPES") or "age"),
        sops_tmpfs=env.get("FLEETSYNC_SOPS_TMPFS") or None,
        helm_bin=env.get("FLEETSYNC_HELM_BIN") or None,
        tools_dir=toolcache.tools_dir(env),
        worker_cluster=env.get("FLEETSYNC_WORKER_CLUSTER") or None,
    )


def _names(text: str) -> tuple[str, ...]:
    """``age, kms`` -> ``("age", "kms")``: a comma-separated list, in order, once each."""
    return tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))


def state_dir() -> Path:
    """Where the local dev fleet keeps its state by default."""
    return _default_state_dir()
