"""``fleetsync notifier``: send the fleet's roll-ups and failures to the spec's routes.

A long-running process on the scheduler side (Redis only: no Git, no
Kubernetes client). It follows the fleet spec file like beat does, so routes
added or changed in ``notifications`` are picked up without a restart, and it
stops cleanly on SIGTERM or SIGINT after sending what is due. Several may run:
each message is claimed once in Redis, so none is sent twice.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from types import FrameType

from scheduler.commands.validate import add_file_arg, fleet_file
from scheduler.notify.loop import Notifier
from scheduler.notify.send import Sender
from shared.logs import configure, get_logger
from shared.state.redisconn import connect
from shared.settings import from_env
from shared.spec.watch import SpecWatcher

log = get_logger("fleetsync.notifier")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("notifier", help="send roll-ups and failures to the spec's notification routes")
    add_file_arg(parser)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between passes over the fleet (default 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = from_env()
    configure(settings.log_level)
    path = fleet_file(args)
    stop = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("notifier stopping", signal=signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    notifier = Notifier(connect(settings.redis_url), SpecWatcher(path, check_every=1.0),
                        Sender(dict(os.environ)))
    log.info("notifier started", fleet=path, interval=args.interval, notifier=notifier.name)
    notifier.run(stop, interval=args.interval)
    return 0
