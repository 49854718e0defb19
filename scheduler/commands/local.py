"""``fleetsync render|diff`` and ``fleetsync sync --local``: the pipeline in this process.

These commands need the worker code (Git, kustomize, the Kubernetes client),
which the scheduler side never imports: they run ``python -m workers.local_cli``
with the same arguments, so the process boundary keeps the layers apart just as
enqueueing by task name does.
"""

from __future__ import annotations

import argparse
import getpass
import subprocess
import sys

from scheduler.commands.validate import add_file_arg


def add_parser(sub: argparse._SubParsersAction) -> None:
    render = sub.add_parser("render", help="print the objects APP renders for a cluster")
    render.add_argument("app")
    render.add_argument("--cluster", required=True)
    add_file_arg(render)
    render.set_defaults(func=run_local, local_command="render")

    diff = sub.add_parser("diff", help="show how live state differs from Git; exit 1 if it does")
    diff.add_argument("app")
    diff.add_argument("--cluster", required=True)
    add_file_arg(diff)
    diff.set_defaults(func=run_local, local_command="diff")


def run_local(args: argparse.Namespace) -> int:
    argv = [args.local_command, args.app, "--cluster", args.cluster]
    if args.file:
        argv += ["-f", args.file]
    if getattr(args, "output", None):
        argv += ["-o", args.output]
    if getattr(args, "reason", ""):          # sync --local through a change window
        argv += ["--reason", args.reason, "--by", args.by or getpass.getuser()]
    return subprocess.call([sys.executable, "-m", "workers.local_cli", *argv])
