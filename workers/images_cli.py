"""``fleetsync images scan --local``: one image-automation pass in this process.

``scheduler.commands.images`` starts ``python -m workers.images_cli -f FILE
[POLICY...]`` and reads the pass's result, as JSON, from stdout. With Redis
reachable the records are kept there, as a worker keeps them (``images status``
shows them), and a commit asks the workers to fetch the source at once; without,
they live in memory for this run only. Credentials come from this process's
environment, by the names the spec gives.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys

from shared import tasks_api
from shared.celery_app import send
from shared.errors import FleetsyncError
from shared.logs import configure
from shared.settings import from_env
from shared.state.redisconn import reachable
from workers.app import app as celery
from workers.context import Context
from workers.images import automation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetsync images scan --local")
    parser.add_argument("policies", nargs="*")
    parser.add_argument("-f", "--file", default=os.environ.get("FLEETSYNC_FLEET"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    configure(os.environ.get("FLEETSYNC_LOG_LEVEL", "WARNING").upper())
    if not args.file:
        print("error: no fleet spec: pass -f FILE or set FLEETSYNC_FLEET", file=sys.stderr)
        return 1
    settings = from_env().with_(fleet_path=args.file)
    ctx = Context.connect(settings, reachable(settings.redis_url))
    names = args.policies or [p.name for p in ctx.fleet().images]

    def fetch(source: str) -> None:
        if not ctx.local:
            send(celery, tasks_api.FETCH_SOURCE, [source], {})

    options = automation.PassOptions(force=True, owner=f"{socket.gethostname()}:{os.getpid()}")
    try:
        result = automation.run_pass(ctx, names, options, os.environ, fetch)
    except FleetsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
