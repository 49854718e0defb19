"""``fleetsync validate [-f FILE]``: check a fleet spec; exit 0 when valid, 1 when not."""

from __future__ import annotations

import argparse
import os
import sys

from shared.settings import from_env
from shared.spec.load import validate_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("validate", help="check a fleet spec and report every problem")
    add_file_arg(parser)
    parser.set_defaults(func=run)


def add_file_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", default=os.environ.get("FLEETSYNC_FLEET"),
                        help="the fleet spec (default: $FLEETSYNC_FLEET)")


def fleet_file(args: argparse.Namespace) -> str:
    if not args.file:
        print("error: no fleet spec: pass -f FILE or set FLEETSYNC_FLEET", file=sys.stderr)
        raise SystemExit(1)
    return args.file


def run(args: argparse.Namespace) -> int:
    fleet, problems, warnings = validate_file(fleet_file(args), allow_local=_allow_local())
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)
    if fleet is None:
        print(f"{len(problems)} problem(s); nothing will be scheduled from this file",
              file=sys.stderr)
        return 1
    units = fleet.units()
    print(f"{args.file}: valid: {len(fleet.sources)} source(s), {len(fleet.clusters)} "
          f"cluster(s), {len(fleet.applications)} application(s), {len(units)} sync unit(s)")
    return 0


def _allow_local() -> bool:
    """Whether the workers would fetch local sources, as this environment sets it."""
    try:
        return from_env().allow_local_sources
    except ValueError:      # another setting is malformed: the workers will say so
        return False
