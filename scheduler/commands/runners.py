"""``fleetsync worker|beat|flower``: run the Celery and Flower processes with fleetsync's app.

Each builds the real command line (``celery -A ... worker|beat|flower``). Beat
and Flower replace this process with it, so signals and exit codes are the
service's own. The worker runs as a supervised child instead: the Celery worker
can die of an "Unrecoverable error" when its broker connection breaks at the
wrong moment (a Redis restart or failover), and a fleet must not lose its
workers to a Redis blip. The supervisor forwards every stop signal, and starts
the worker again (1, 2, 4 ... 30 s apart) whenever it exits without having been
told to by a signal to ``fleetsync worker`` itself: a failure, and also a clean
exit (0), which is what a remote-control ``shutdown`` broadcast (``celery control
shutdown``, Flower's shutdown button) ends in, so nobody but the operator of the
process stops a fleet's reconciliation. ``--no-restart`` runs it bare.

Flower is an operator's live view, so ``fleetsync flower`` starts it configured
for that, through ``flower_guard`` (Celery's command line with a guard in front
of Flower's handlers: without authentication, only loopback names, only its own
origin, and no remote control; see that module): the task list shows each
task's readable arguments (``argsrepr``: ``platform@staging rev 81a51c7 (beat)``),
its result (phase and summary first) and its exception; history is kept in a state file (``FLEETSYNC_FLOWER_DB``,
by default one per broker under the state directory) and survives a restart.
Each of these defaults gives way to the same Flower option given on the command
line (``--max_tasks=50000``) or as a ``FLOWER_*`` variable (``FLOWER_MAX_TASKS``),
which Flower reads before its command line and would otherwise be overridden.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from shared.state.redis_url import parse as parse_redis_url
from shared.settings import DEFAULT_REDIS_URL, state_dir
from shared.tasks_api import STAGE_QUEUES, apply_queue


def add_parser(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser("worker", help="run a Celery worker (extra options go to celery)")
    worker.add_argument("--cluster", help="pull mode: consume only apply.CLUSTER")
    worker.add_argument("--queues", help="comma-separated queues (default: every stage queue)")
    worker.add_argument("--no-restart", action="store_true",
                        help="do not start the worker again when it dies on its own")
    worker.set_defaults(func=run_worker, passthrough=True)

    beat = sub.add_parser("beat", help="run Celery beat with the schedule from the fleet spec")
    beat.set_defaults(func=run_beat, passthrough=True)

    flower = sub.add_parser("flower", help="run Flower (its API is open only on loopback)")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument("--address", default="127.0.0.1")
    flower.set_defaults(func=run_flower, passthrough=True)


def worker_argv(args: argparse.Namespace) -> list[str]:
    queues = args.queues or (apply_queue(args.cluster, True) if args.cluster else ",".join(STAGE_QUEUES))
    return [sys.executable, "-m", "celery", "-A", "workers.app", "--quiet", "worker", "-Q", queues,
            "--without-mingle", "--without-gossip", *args.extra]


def beat_argv(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "scheduler.app", "--quiet", "beat",
            "-S", "scheduler.beat:FleetScheduler", *args.extra]


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


# What an operator's Tasks page shows, in order (Flower's slugs).
FLOWER_COLUMNS = "name,state,args,result,exception,received,runtime,uuid,worker"
FLOWER_MAX_TASKS = 10_000                 # kept in memory and in the state file
FLOWER_SAVE_INTERVAL_MS = 60_000          # besides the save when Flower stops


def flower_db(env: dict[str, str]) -> Path:
    """Flower's state file: ``FLEETSYNC_FLOWER_DB``, or one per broker in the state directory.

    One file per broker (host, port, database; never the password), so that a
    Flower pointed at another Redis does not show that fleet's old tasks.
    """
    if env.get("FLEETSYNC_FLOWER_DB"):
        return Path(env["FLEETSYNC_FLOWER_DB"])
    target = parse_redis_url(env.get("FLEETSYNC_REDIS_URL") or DEFAULT_REDIS_URL)
    url = urlsplit(target.url)
    broker = (f"sentinel-{target.master}-{target.db}" if target.is_sentinel else
              f"{url.hostname or 'localhost'}-{url.port or 6379}-{url.path.strip('/') or '0'}")
    return state_dir() / f"flower-{re.sub(r'[^A-Za-z0-9.-]', '_', broker)}.db"


def _flower_option(arg: str) -> str:
    """``--basic-auth=u:p`` and ``--basic_auth=u:p`` both name ``basic_auth``."""
    return arg.lstrip("-").partition("=")[0].replace("-", "_")


def flower_defaults(env: dict[str, str], extra: list[str]) -> dict[str, str]:
    """fleetsync's Flower options, less those the operator set (argument or ``FLOWER_*``)."""
    defaults = {"tasks_columns": FLOWER_COLUMNS, "persistent": "True",
                "db": str(flower_db(env)), "state_save_interval": str(FLOWER_SAVE_INTERVAL_MS),
                "max_tasks": str(FLOWER_MAX_TASKS)}
    given = {_flower_option(a) for a in extra if a.startswith("--")}
    return {k: v for k, v in defaults.items()
            if k not in given and not env.get(f"FLOWER_{k.upper()}")}


def flower_authenticated(env: dict[str, str], extra: list[str]) -> bool:
    """Basic auth or Flower's OAuth (``--auth`` with ``--auth_provider``) is configured."""
    given = {_flower_option(a) for a in extra if a.startswith("--")}
    return bool({"basic_auth", "auth"} & given) or any(
        env.get(k) for k in ("FLOWER_BASIC_AUTH", "FLOWER_AUTH"))


def flower_argv(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """Flower's command; refuses to listen beyond loopback without authentication."""
    authenticated = flower_authenticated(env, args.extra)
    if not is_loopback(args.address) and not authenticated:
        raise SystemExit(
            f"error: Flower on {args.address} would be reachable beyond loopback without "
            "authentication: set FLOWER_BASIC_AUTH=user:password (or --basic-auth, or Flower's "
            "OAuth options --auth/--auth_provider), or use --address 127.0.0.1")
    if is_loopback(args.address) and not authenticated:
        env["FLOWER_UNAUTHENTICATED_API"] = "true"   # local scripts may POST tasks (guarded)
    options = [f"--{k}={v}" for k, v in flower_defaults(env, args.extra).items()]
    return [sys.executable, "-m", "scheduler.commands.flower_guard", "-A", "scheduler.app",
            "flower", f"--port={args.port}", f"--address={args.address}", *options, *args.extra]


def _exec(argv: list[str], env: dict[str, str]) -> int:
    sys.stdout.flush()
    os.execve(argv[0], argv, env)
    return 0  # not reached


def run_worker(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.cluster:
        env["FLEETSYNC_WORKER_CLUSTER"] = args.cluster
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fleetsync-metrics-")
    if getattr(args, "no_restart", False):
        return _exec(worker_argv(args), env)
    return supervise(worker_argv(args), env)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


def restart_delay(failures: int) -> float:
    return float(min(30, 2 ** max(0, failures - 1)))


def supervise(argv: list[str], env: dict[str, str]) -> int:
    """Run ``argv``; start it again whenever it ends on its own; stop with it when told."""
    stopping = threading.Event()
    child: list[subprocess.Popen] = []

    def forward(signum: int, _: object) -> None:
        stopping.set()
        if child and child[0].poll() is None:
            child[0].send_signal(signum)

    for sig in STOP_SIGNALS:
        signal.signal(sig, forward)
    failures = 0
    while True:
        started = time.monotonic()
        child[:] = [subprocess.Popen(argv, env=env)]
        code = child[0].wait()
        if stopping.is_set():
            return code
        failures = 1 if time.monotonic() - started > 60 else failures + 1
        delay = restart_delay(failures)
        event = ("worker stopped without a signal to fleetsync worker (a remote shutdown?); "
                 "starting it again") if code == 0 else "worker exited; starting it again"
        print(json.dumps({"event": event, "exit_code": code,
                          "in_seconds": delay, "level": "warning",
                          "logger": "fleetsync.supervisor"}), file=sys.stderr, flush=True)
        if stopping.wait(delay):
            return code


def run_beat(args: argparse.Namespace) -> int:
    return _exec(beat_argv(args), dict(os.environ))


def run_flower(args: argparse.Namespace) -> int:
    env = {**os.environ, "FLEETSYNC_PROCESS": "flower"}     # its API sends a short list only
    argv = flower_argv(args, env)
    db = flower_db(env)
    if f"--db={db}" in argv:
        db.parent.mkdir(parents=True, exist_ok=True)
    return _exec(argv, env)
