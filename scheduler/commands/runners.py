"""``fleetsync worker|beat|flower``: run the Celery and Flower processes with fleetsync's app.

Each builds the real command line (``celery -A ... worker|beat|flower``). Beat
and Flower replace this process with it, so signals and exit codes are the
service's own. The worker runs as a supervised child instead: the Celery worker
can die of an "Unrecoverable error" when its broker connection breaks at the
wrong moment (a Redis restart or failover), and a fleet must not lose its
workers to a Redis blip. The supervisor forwards every stop signal, and starts
the worker again (1, 2, 4 ... 30 s apart) only when it exited on its own with a
failure. ``--no-restart`` runs it bare.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

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


def flower_argv(args: argparse.Namespace, env: dict[str, str]) -> list[str]:
    """Flower's command; refuses to listen beyond loopback without authentication."""
    authenticated = any(env.get(k) for k in ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")) or any(
        a.startswith(("--basic-auth", "--auth")) for a in args.extra)
    if not is_loopback(args.address) and not authenticated:
        raise SystemExit(
            f"error: Flower on {args.address} would be reachable beyond loopback without "
            "authentication: set FLOWER_BASIC_AUTH=user:password (or --basic-auth, or Flower's "
            "OAuth options --auth/--auth_provider), or use --address 127.0.0.1")
    if is_loopback(args.address) and not authenticated:
        env["FLOWER_UNAUTHENTICATED_API"] = "true"   # local use: scripts may POST tasks
    return [sys.executable, "-m", "celery", "-A", "scheduler.app", "flower",
            f"--port={args.port}", f"--address={args.address}", *args.extra]


def _exec(argv: list[str], env: dict[str, str]) -> int:
    sys.stdout.flush()
    os.execve(argv[0], argv, env)
    return 0  # not reached


def run_worker(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fleetsync-metrics-")
    if getattr(args, "no_restart", False):
        return _exec(worker_argv(args), env)
    return supervise(worker_argv(args), env)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


def restart_delay(failures: int) -> float:
    return float(min(30, 2 ** max(0, failures - 1)))


def supervise(argv: list[str], env: dict[str, str]) -> int:
    """Run ``argv``; start it again when it fails on its own; stop with it when told."""
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
        if stopping.is_set() or code == 0:
            return code
        failures = 1 if time.monotonic() - started > 60 else failures + 1
        delay = restart_delay(failures)
        print(json.dumps({"event": "worker exited; starting it again", "exit_code": code,
                          "in_seconds": delay, "level": "warning",
                          "logger": "fleetsync.supervisor"}), file=sys.stderr, flush=True)
        if stopping.wait(delay):
            return code


def run_beat(args: argparse.Namespace) -> int:
    return _exec(beat_argv(args), dict(os.environ))


def run_flower(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    return _exec(flower_argv(args, env), env)
