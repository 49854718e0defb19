"""The ``fleetsync`` command line: one entry point, a sub-command per job.

Each sub-command lives in its own module under ``scheduler/commands`` and
registers itself with ``add_parser(subparsers)``; this module only assembles
them and turns known errors into a message on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from shared.errors import FleetsyncError

COMMANDS = ("dev", "validate", "local", "sync", "status", "runners", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetsync",
        description="Keep a fleet of Kubernetes clusters in the state that Git describes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"scheduler.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.func(args) or 0)
    except FleetsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
