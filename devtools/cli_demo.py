"""``fleetsync demo [--keep] [--interval S] [--fetch-interval S] [--state-dir DIR]``: the tutorial, end to end.

Registered with the CLI through the ``fleetsync.commands`` entry-point group, so
that ``scheduler/`` never imports this package; the final status table comes from
``fleetsync status`` run as a process, like every other scheduler service here.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools.binaries import BinaryError, ensure_binaries
from devtools.demo import APP, Demo, DemoFailed
from devtools.demo_steps import STEPS
from devtools.fleet import DevFleetError
from shared.settings import state_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="walk the GitOps tutorial on a local fleet")
    parser.add_argument("--keep", action="store_true",
                        help="stay up after the steps; Ctrl-C stops everything")
    parser.add_argument("--interval", type=int, default=5,
                        help="reconcile interval of every cluster in seconds (default 5)")
    parser.add_argument("--fetch-interval", type=int, default=1,
                        help="how often the Git source is polled, in seconds (default 1)")
    parser.add_argument("--state-dir", type=Path, default=state_dir() / "demo")
    parser.set_defaults(func=run)


def say(message: str) -> None:
    print(message, flush=True)


def _interrupt(*_: object) -> None:
    """SIGTERM stops everything as Ctrl-C does."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    try:
        ensure_binaries(say)
    except BinaryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    demo = Demo(args.state_dir, interval=args.interval, fetch_interval=args.fetch_interval,
                say=say)
    signal.signal(signal.SIGTERM, _interrupt)
    total = time.monotonic()
    try:
        demo.start()
        for number, (name, step) in enumerate(STEPS, 1):
            started = time.monotonic()
            first, *more = step(demo).splitlines()
            head = f"[{number}/{len(STEPS)}] {name:<14} ok  {time.monotonic() - started:6.1f}s  "
            say(head + first + "".join("\n" + " " * len(head) + line for line in more))
        say(f"\nAll {len(STEPS)} steps passed in {time.monotonic() - total:.1f}s.\n")
        subprocess.run([sys.executable, "-m", "scheduler.cli", "status", "--app", APP],
                       env=demo.env(), check=False)
        say(f"\nFlower: {demo.flower_url}")
        if args.keep:
            say("Staying up (--keep); press Ctrl-C to stop everything.")
            while True:
                time.sleep(3600)
        return 0
    except (DemoFailed, DevFleetError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        say("\nStopping...")
        return 0 if args.keep else 130
    finally:
        demo.stop()
        say("Stopped every process the demo started.")
