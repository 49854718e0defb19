"""The ``fleetsync`` command line: one entry point, a sub-command per job.

Each sub-command lives in its own module under ``scheduler/commands`` and
registers itself with ``add_parser(subparsers)``; this module only assembles
them and turns known errors into a message on stderr and exit code 1.

Sub-commands from other packages (``fleetsync dev`` and ``fleetsync demo`` from
``devtools/``) register through the ``fleetsync.commands`` entry-point group, so
the scheduler never imports them; an entry point whose package is not installed
(the container image carries no dev tools) is left out.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Callable

from shared.errors import FleetsyncError

COMMANDS = ("validate", "local", "health", "sync", "status", "runners", "acl", "notifier",
            "server", "rollout", "windows", "import_cmd", "preview", "images")
ENTRY_POINT_GROUP = "fleetsync.commands"
# ``fleetsync worker`` lives as long as its Celery worker (it supervises it), so it
# builds only the module of its own sub-command: the whole parser would keep every
# other command's imports (about 26 MB) resident in each worker for nothing.
RESIDENT = {"worker": "runners"}

AddParser = Callable[[argparse._SubParsersAction], None]


def plugin_commands() -> dict[str, AddParser]:
    """``add_parser`` of every installed entry point in ``fleetsync.commands``, by name."""
    found: dict[str, AddParser] = {}
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if entry.name in found:
            continue  # the same distribution seen twice on sys.path
        add_parser = _load(entry)
        if add_parser is not None:
            found[entry.name] = add_parser
    return found


def _load(entry: EntryPoint) -> AddParser | None:
    try:
        return entry.load()  # type: ignore[no-any-return]
    except ModuleNotFoundError as exc:
        if exc.name and (entry.module + ".").startswith(exc.name + "."):
            return None  # the package that provides it is not installed
        raise


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or only what ``command`` needs when it is ``RESIDENT``."""
    parser = argparse.ArgumentParser(
        prog="fleetsync",
        description="Keep a fleet of Kubernetes clusters in the state that Git describes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    resident = RESIDENT.get(command or "")
    for name in (resident,) if resident else COMMANDS:
        importlib.import_module(f"scheduler.commands.{name}").add_parser(sub)
    if not resident:
        for add_parser in plugin_commands().values():
            add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
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
