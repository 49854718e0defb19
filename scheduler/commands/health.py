"""``fleetsync health [-f FLEET] [--app APP] [--lua-dir DIR] FILE...``: judge objects on disk.

For people writing and testing health checks (CEL in the fleet spec, Argo CD's Lua
scripts): prints each object's verdict, the rule that decided and its message;
``-o json`` gives ``{apiVersion, kind, namespace, name, verdict, rule, message}``
per object, in input order. The verdicts come from the workers' own code, run
as ``python -m workers.health_cli`` so that the scheduler side never imports it;
no cluster is read and no Redis is needed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("health", help="judge the health of objects in YAML/JSON files, as "
                                           "a worker would")
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="YAML or JSON: one or many documents, or a kind: List; - for stdin")
    parser.add_argument("-f", "--file", help="a fleet spec: its healthChecks, healthLua "
                                             "and health settings")
    parser.add_argument("--app", help="also the checks and settings of this application "
                                      "(needs -f)")
    parser.add_argument("--lua-dir", help="Argo CD-style health scripts: "
                                          "<group>/<kind>/health.lua")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    argv = [*args.files, "-o", args.output]
    for flag, value in (("-f", args.file), ("--app", args.app), ("--lua-dir", args.lua_dir)):
        if value:
            argv += [flag, value]
    return subprocess.call([sys.executable, "-m", "workers.health_cli", *argv])
