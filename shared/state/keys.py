"""Every Redis key fleetsync writes, named in one place.

Redis is shared infrastructure and a cache: anything here may be flushed, and
the next beat tick rebuilds it (DESIGN: durable truth). Keys fall into four
groups, which is also how access is split between roles:

    protocol   queued:, pending:, running:, lock:, fence:, run:      workers, client (read)
    state      status:, history:, units, source:, fetching:, cluster:   workers, scheduler
               beat:last_tick                                      beat (writes), metrics (reads)
               rollout:, suspended:                                 workers, CLI and server (write)
               image:                                              workers (write), CLI, server, Flower (read)
    caches     render:, rendered:                                  workers only
    broker     Celery/kombu's own keys (queues, unacked, results)  everyone who enqueues

A sync unit is written ``<cluster>/<app>`` inside keys.
"""

from __future__ import annotations

PREFIX = "fleetsync"
RENDER_PREFIX = f"{PREFIX}:render:"
UNITS = f"{PREFIX}:units"
BEAT_LAST_TICK = f"{PREFIX}:beat:last_tick"     # epoch seconds of beat's last tick (shared/state/heartbeat.py)


def unit_id(app: str, cluster: str) -> str:
    return f"{cluster}/{app}"


def split_unit(unit: str) -> tuple[str, str]:
    """``(app, cluster)`` of a unit id."""
    cluster, app = unit.split("/", 1)
    return app, cluster


# -- the sync-unit protocol (shared/protocol.py, shared/state/runs.py) ---------------------
def queued(unit: str) -> str:
    return f"{PREFIX}:queued:{unit}"


def pending(unit: str) -> str:
    return f"{PREFIX}:pending:{unit}"


def running(unit: str) -> str:
    return f"{PREFIX}:running:{unit}"


def lock(unit: str) -> str:
    return f"{PREFIX}:lock:{unit}"


def fence(unit: str) -> str:
    return f"{PREFIX}:fence:{unit}"


def protocol(unit: str) -> list[str]:
    """The unit's protocol keys (queued, pending, running, lock): all absent when no run
    of it is queued, parked or running."""
    return [queued(unit), pending(unit), running(unit), lock(unit)]


def run(unit: str, run_id: str) -> str:
    """A run's record, under its unit's name (``run:<cluster>/<app>:<run id>``): a pull
    cluster's Redis user reaches its own cluster's runs only, whatever run ids it learns."""
    return f"{PREFIX}:run:{unit}:{run_id}"


# -- status and history (shared/state/status.py) -------------------------------------------
def status(unit: str) -> str:
    return f"{PREFIX}:status:{unit}"


def history(unit: str) -> str:
    return f"{PREFIX}:history:{unit}"


def source(name: str) -> str:
    return f"{PREFIX}:source:{name}"


def fetching(name: str) -> str:
    return f"{PREFIX}:fetching:{name}"


def cluster_units(name: str) -> str:
    """The units of one cluster that status is written for (beside the fleet-wide ``UNITS``),
    so that a pass over a cluster reads its own units, not the fleet's."""
    return f"{PREFIX}:cluster:{name}:units"


def cluster_indexed(name: str) -> str:
    """Set once every unit of the cluster in ``UNITS`` is in its ``cluster_units`` too."""
    return f"{PREFIX}:cluster:{name}:indexed"


def cluster_down(name: str) -> str:
    return f"{PREFIX}:cluster:{name}:down"


def cluster_probe(name: str) -> str:
    return f"{PREFIX}:cluster:{name}:probe"


def cluster_hold(name: str) -> str:
    """The last hold a cluster's fleetsync-hold ConfigMap was seen to put on it (JSON, ""
    none): to write one audit line per hold seen or lifted (workers/run/cluster_hold.py)."""
    return f"{PREFIX}:cluster:{name}:hold"


# -- operators' holds: rollouts in waves, suspensions (shared/state/rollout_store.py) ------
def rollout(app: str) -> str:
    """An application's rollout record (JSON)."""
    return f"{PREFIX}:rollout:{app}"


def suspended(app: str) -> str:
    """Who suspended an application: a hash, field "*" (all of it) or a cluster name."""
    return f"{PREFIX}:suspended:{app}"


def window_override(unit: str) -> str:
    """A manual sync let through a closed change window: the revision, by whom, why (JSON,
    with a TTL; shared/state/overrides.py)."""
    return f"{PREFIX}:window_override:{unit}"


# -- image updates committed to Git sources (shared/state/imageupdates.py) -----------------
def image_updates(source: str) -> str:
    """A Git source's last image-update pass: commit, changes, problems (JSON)."""
    return f"{PREFIX}:image-updates:{source}"


def image_markers(source: str, revision: str) -> str:
    """The setter markers of a source's tree at a revision: file, line, policy, value (JSON)."""
    return f"{PREFIX}:image-markers:{source}:{revision}"


def image_push_lock(repository: str) -> str:
    """Held while a worker commits and pushes image updates to one repository URL."""
    return f"{PREFIX}:image-push-lock:{repository}"


# -- caches (workers/render/cache.py, workers/run/stages.py) -----------------------------
def rendered(unit: str, revision: str, spec_hash: str) -> str:
    """The render key of a unit at a revision and spec, while its render is cached."""
    return f"{PREFIX}:rendered:{unit}:{revision}:{spec_hash}"


# -- previews of a candidate revision (shared/state/previews.py) ---------------------------
PREVIEWS = f"{PREFIX}:previews"       # sorted set: preview id -> started (epoch seconds)


def preview(preview_id: str) -> str:
    """A preview's record (hash: ``meta`` JSON, ``done``/``total`` counters)."""
    return f"{PREFIX}:preview:{preview_id}"


def preview_units(preview_id: str) -> str:
    """A preview's per-unit results (list of JSON records, one per unit considered)."""
    return f"{PREFIX}:preview:{preview_id}:units"


# -- a pull request's preview posted to its forge (scheduler/server/preview_poster.py) --------
PREVIEW_POSTS = f"{PREFIX}:preview-posts"     # hash: preview id -> what is still to post (JSON)


def preview_posting(preview_id: str) -> str:
    """The claim of one poster's pass over a preview (a few seconds)."""
    return f"{PREFIX}:preview-posting:{preview_id}"


def preview_pr(provider: str, repository: str, number: object) -> str:
    """A pull request's preview comment (hash: ``comment`` id, ``preview`` the newest)."""
    return f"{PREFIX}:preview-pr:{provider}:{repository}:{number}"


# -- image policies' last scans (shared/state/images.py) -----------------------------------
def image(policy: str) -> str:
    """An image policy's last scan: the tag and digest it picked, or its error (JSON)."""
    return f"{PREFIX}:image:{policy}"
