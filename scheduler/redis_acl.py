"""Redis ACL users per role: which keys, channels and commands each part of fleetsync needs.

Redis is shared infrastructure, not a trusted party (DESIGN: trust boundaries),
and in pull mode it is reached from every pull cluster. One ACL user per role
keeps a leaked credential to what that role does; one user per pull cluster
keeps cluster A's worker out of cluster B's queue, status and render memo.

The key names come from ``shared.state.keys`` (ours) and from Celery/kombu's Redis
transport (theirs, kombu 5.x):

    <queue>, <queue>\\x06\\x16<priority>    a queue is a list (plus one per priority step)
    _kombu.binding.<exchange>             bindings of an exchange: SMEMBERS on every publish
    _kombu.binding_permanent.<exchange>   the same, kept by the binding sweep
    _kombu.binding_deadlines              bindings of expiring queues (remote-control replies)
    unacked, unacked_index, unacked_mutex  delivered-not-acked messages of the central workers
    unacked.apply.<cluster> (and _index, _mutex)  those of one pull cluster's workers
    celery-task-meta-<task id>            results (GET, SET, and PUBLISH on a channel of that name)
    /<db>.celeryev/<routing key>          task and worker events (PUBLISH; Flower PSUBSCRIBEs)
    /<db>.celery.pidbox                   remote control broadcasts (workers PSUBSCRIBE)

A pull cluster's user reaches nothing of another cluster's runs: run records are
keyed by unit (``run:<cluster>/<app>:<run id>``) and its workers keep their
in-flight messages in a hash of their own (``tasks_api.unacked_keys``), so it
never sees another cluster's run ids, and knowing one would not help. What it
cannot be kept from, because kombu shares it between all queues (the binding
tables' reads, the result keys by task id, the event and remote-control
channels), is listed in ``SHARED`` with the reason; deploy/kubernetes/README.md
says what that leaves.

``roles(clusters, pull)`` is pure; ``aclfile(...)`` renders Redis' ACL file syntax.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Iterable, Mapping

from shared.state import keys
from shared.errors import FleetsyncError
from shared.tasks_api import STAGE_QUEUES, apply_queue, unacked_keys

# after a cluster-bound name, anything but another name character: apply.edge-1 and its
# priority lists apply.edge-1\x06\x16<n>, never apply.edge-10
_NOT_NAME = "[^a-z0-9-]*"
_P = keys.PREFIX

# commands: everything a role's categories hold, never the admin, dangerous or
# key-enumerating ones (KEYS is @dangerous; SCAN and RANDOMKEY are not)
_NEVER = ("-@admin", "-@dangerous", "-scan", "-randomkey", "-script|flush", "-script|kill",
          "-function", "-migrate", "-move", "-copy", "-rename", "-renamenx")
WORKER_COMMANDS = ("-@all", "+@connection", "+@read", "+@write", "+@pubsub", "+@scripting",
                   "+@transaction", "+@keyspace", "+time", *_NEVER)
READ_COMMANDS = ("-@all", "+@connection", "+@read", *_NEVER)

# what every Celery client reads or writes whatever its role (see the module docstring)
RESULTS = ("~celery-task-meta-*", "&celery-task-meta-*")


def events(db: int) -> str:
    """Fanout channels carry the database number; PSUBSCRIBE is matched literally."""
    return f"&/{db}.celeryev/*"


def remote_control(db: int) -> tuple[str, ...]:
    return (f"&/{db}.celery.pidbox", f"&/{db}.celery.pidbox/*")
BINDINGS_READ = "%R~_kombu.binding.*"

# state keys of a sync unit, named <kind>:<cluster>/<app>
UNIT_KINDS = ("queued", "pending", "running", "lock", "fence", "run", "status", "history")
# keys the read-only CLI may read: everything of ours but render entries and memos
READABLE = ("queued", "pending", "running", "lock", "fence", "run", "status", "history",
            "source", "fetching", "cluster", "beat", "units", "preview", "image")
# a preview's own record (``preview:<12 hex id>``), never its units list: who starts a
# preview creates it, the workers fill it (``shared.state.previews``)
PREVIEW_RECORD = f"~{keys.preview('?' * 12)}"

SHARED: Mapping[str, str] = {
    "_kombu.binding.* (read)":
        "a publish looks up the exchange's bindings; a pull worker publishes to render and "
        "to its own apply queue",
    "render (write only)":
        "a pull worker whose render entry expired sends the run back to the render queue",
    "celery-task-meta-*":
        "results are keyed by task id only (uuid4: not guessable, and SCAN and KEYS are "
        "refused, so not listable)",
    f"{keys.UNITS} (SADD)": "the index of units that status is written for",
    "/<db>.celeryev/*, /<db>.celery.pidbox":
        "Redis 7 does not tell PUBLISH from SUBSCRIBE rights: a worker that receives remote "
        "control (Flower's worker list) can also broadcast it, and every worker sends events",
    f"{keys.preview('*')} (write)":
        "a preview's part for a pull cluster runs there and adds its units' records to the "
        "preview (records of previews only: never a unit's status)",
}


@dataclass(frozen=True)
class Role:
    """One ACL user: who uses it, what it may run, which keys and channels."""

    user: str
    who: str
    commands: tuple[str, ...]
    keys: tuple[str, ...]            # ~pattern (read and write), %R~pattern, %W~pattern
    channels: tuple[str, ...]        # &pattern

    def rules(self) -> list[str]:
        return ["resetkeys", "resetchannels", *self.commands, *self.keys, *self.channels]


def _queues(*names: str) -> tuple[str, ...]:
    return tuple(p for name in names for p in (f"~{name}", f"~{name}{_NOT_NAME}"))


def _bindings(*queues: str) -> tuple[str, ...]:
    """The binding sets a producer may write: kombu declares a queue's binding (SADD
    ``_kombu.binding.<queue>``) on its first publish to that queue."""
    return tuple(f"~_kombu.{table}.{q}" for table in ("binding", "binding_permanent")
                 for q in queues)


def pull_worker(cluster: str, db: int = 0) -> Role:
    """A worker inside ``cluster``: its apply queue, its units' state, nothing of another's."""
    queue = apply_queue(cluster, True)
    own = tuple(f"~{_P}:{kind}:{cluster}/*" for kind in UNIT_KINDS)
    return Role(
        user=f"fleetsync-pull-{cluster}", who=f"the pull worker in cluster {cluster}",
        commands=WORKER_COMMANDS,
        keys=(f"~{queue}", f"~{queue}{_NOT_NAME}",
              f"~_kombu.binding.{queue}", f"~_kombu.binding_permanent.{queue}",
              "~_kombu.binding.celery.pidbox", "~_kombu.binding_permanent.celery.pidbox",
              "~_kombu.binding.reply.celery.pidbox", "~_kombu.binding_deadlines",
              "~*.celery.pidbox*", BINDINGS_READ,
              "%W~render", f"%W~render{_NOT_NAME}",
              *(f"~{key}" for key in unacked_keys(cluster).values()), RESULTS[0],
              *own, f"~{_P}:cluster:{cluster}:*", f"~{_P}:capabilities:{cluster}",
              f"~{keys.UNITS}",
              f"%R~{keys.RENDER_PREFIX}{cluster}/*", f"%R~{keys.BEAT_LAST_TICK}",
              f"%R~{_P}:rollout:*", f"%R~{_P}:suspended:*",
              f"%R~{_P}:window_override:{cluster}/*",
              f"%R~{_P}:source:*", f"~{keys.preview('*')}"),
        channels=(events(db), *remote_control(db), RESULTS[1]))


def central_worker() -> Role:
    """The central workers: every stage of push clusters, fetch and render of all."""
    return Role("fleetsync-worker", "central workers (reconcile, fetch, render, push apply)",
                WORKER_COMMANDS, ("~*",), ("&*",))


def beat(db: int = 0) -> Role:
    """Beat enqueues reconciles and fetches and writes its heartbeat."""
    return Role("fleetsync-beat", "beat", WORKER_COMMANDS,
                (*_queues("reconcile", "fetch"), *_bindings("reconcile", "fetch"), BINDINGS_READ,
                 f"~{keys.BEAT_LAST_TICK}", f"%R~{_P}:*"),
                (events(db),))


def flower(db: int = 0) -> Role:
    """Flower: events, remote control, results, queue lengths; sends to ``reconcile`` only."""
    queues = tuple(f"%R~{q}*" for q in STAGE_QUEUES)
    return Role("fleetsync-flower", "Flower (dashboard, REST API)", WORKER_COMMANDS,
                (*_queues("reconcile"), *_bindings("reconcile"), *queues, BINDINGS_READ,
                 RESULTS[0],
                 "~*.reply.celery.pidbox*", "~_kombu.binding.reply.celery.pidbox",
                 "~_kombu.binding_permanent.reply.celery.pidbox", "~_kombu.binding_deadlines",
                 *(f"%R~{_P}:{kind}*" for kind in READABLE)),
                (events(db), *remote_control(db), RESULTS[1]))


def cli_reader() -> Role:
    """``fleetsync status`` and ``history`` for people: reads state, writes nothing."""
    return Role("fleetsync-cli", "the read-only CLI (status, history)", READ_COMMANDS,
                (*(f"%R~{_P}:{kind}*" for kind in READABLE), "%R~celery-task-meta-*",
                 *(f"%R~{q}*" for q in STAGE_QUEUES)), ())


def server(db: int = 0) -> Role:
    """``fleetsync server``: reads state like the CLI, records webhook deliveries and fetch
    requests of sources, starts previews (their record and index, not their results), keeps
    what it posted of them to the forges (``preview-posts``, ``preview-posting:*``,
    ``preview-pr:*``), and sends to ``reconcile`` and ``fetch`` like beat."""
    return Role("fleetsync-server", "fleetsync server (webhooks, API, dashboard)",
                WORKER_COMMANDS,
                (*_queues("reconcile", "fetch"), *_bindings("reconcile", "fetch"), BINDINGS_READ,
                 RESULTS[0],
                 f"~{_P}:source:*:fetch-wanted", f"~{_P}:source:*:delivery:*",
                 f"~{_P}:rollout:*", f"~{_P}:suspended:*", PREVIEW_RECORD, f"~{keys.PREVIEWS}",
                 f"~{keys.PREVIEW_POSTS}", f"~{keys.preview_posting('*')}",
                 f"~{keys.preview_pr('*', '*', '*')}",
                 *(f"%R~{_P}:{kind}*" for kind in READABLE), "%R~celery-task-meta-*",
                 *(f"%R~{q}*" for q in STAGE_QUEUES)),
                (events(db), RESULTS[1]))


def roles(clusters: Iterable[str], pull: Iterable[str], db: int = 0) -> list[Role]:
    """Every role of a fleet whose pull-mode clusters are ``pull`` (a subset of ``clusters``),
    on Redis database ``db``."""
    known = set(clusters)
    unknown = sorted(set(pull) - known)
    if unknown:
        raise FleetsyncError(f"no cluster named {', '.join(map(repr, unknown))} in the fleet "
                             f"spec (clusters: {', '.join(sorted(known)) or 'none'})")
    return [central_worker(), beat(db), flower(db), cli_reader(), server(db),
            *(pull_worker(c, db) for c in sorted(set(pull)))]


def new_password() -> str:
    return secrets.token_hex(32)


def aclfile(users: Iterable[tuple[Role, str]], *, hashed: bool = True) -> str:
    """Redis' ACL file for these roles and passwords; the default user is switched off."""
    lines = ["user default off resetkeys resetchannels -@all"]
    for role, password in users:
        secret = f"#{hashlib.sha256(password.encode()).hexdigest()}" if hashed else f">{password}"
        lines.append(" ".join(["user", role.user, "on", secret, *role.rules()]))
    return "\n".join(lines) + "\n"


def setuser_args(role: Role, password: str) -> list[str]:
    """``ACL SETUSER`` arguments that (re)define ``role`` with ``password``."""
    return ["ACL", "SETUSER", role.user, "reset", "on", f">{password}", *role.rules()]
