"""``fleetsync server [--host H] [--port P]``: webhooks, the JSON API and the dashboard.

Loopback without authentication by default, like Flower; any other address
needs bearer tokens (``FLEETSYNC_SERVER_TOKEN_FILE`` or
``FLEETSYNC_SERVER_TOKEN_ENV``) and is refused before anything listens.
"""

from __future__ import annotations

import argparse

from scheduler.server.config import DEFAULT_PORT, check_exposure, from_env


def add_parser(sub: argparse._SubParsersAction) -> None:
    server = sub.add_parser("server", help="serve Git webhooks, the JSON API and the dashboard")
    server.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (beyond loopback only with tokens)")
    server.add_argument("--port", type=int, default=DEFAULT_PORT)
    server.set_defaults(func=run_server)


def run_server(args: argparse.Namespace) -> int:
    import uvicorn

    from scheduler.server.app import build
    from shared.logs import configure

    settings = from_env(args.host, args.port)
    check_exposure(settings)
    configure(settings.settings.log_level)      # JSON lines, the audit's among them
    uvicorn.run(build(settings), host=settings.host, port=settings.port,
                log_level=settings.settings.log_level.lower(), access_log=False,
                server_header=False, proxy_headers=False, timeout_graceful_shutdown=5)
    return 0
