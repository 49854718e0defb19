"""``fleetsync redis-acl -f fleet.yaml``: one Redis ACL user per role and per pull cluster.

Prints Redis' ACL file (``--format aclfile``, for ``aclfile`` in redis.conf) or
``ACL SETUSER`` commands (``--format commands``, for ``redis-cli``) with fresh
random passwords. Pull-mode clusters are those without ``kubeconfig:`` in the
spec, or the ones named with ``--pull``. With ``--out DIR`` it writes
``DIR/users.acl`` (passwords as SHA-256, safe to hand to Redis) and one
``DIR/<user>.env`` per user with its ``FLEETSYNC_REDIS_URL`` (mode 0600).
The users and their keys are in ``scheduler/redis_acl.py``.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from scheduler import redis_acl
from scheduler.commands.validate import add_file_arg, fleet_file
from shared.errors import FleetsyncError
from shared.state.redis_url import parse as parse_redis_url
from shared.spec.load import load_fleet


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("redis-acl", help="Redis ACL users for each role and pull cluster")
    add_file_arg(parser)
    parser.add_argument("--pull", action="append", default=None, metavar="CLUSTER",
                        help="a pull-mode cluster (repeat; default: clusters without kubeconfig)")
    parser.add_argument("--format", choices=("aclfile", "commands"), default="aclfile")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0",
                        help="the Redis the users are for (host, port, database, TLS options)")
    parser.add_argument("--out", metavar="DIR", help="write users.acl and <user>.env files here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = fleet_file(args)
    fleet = load_fleet(path)
    pull = args.pull if args.pull is not None else [
        c.name for c in fleet.clusters.values() if c.kubeconfig is None]
    try:
        roles = redis_acl.roles(fleet.clusters, pull, db=database(args.redis_url))
    except FleetsyncError as exc:
        raise FleetsyncError(f"{path}: --pull: {exc}") from exc
    users = [(role, redis_acl.new_password()) for role in roles]
    if args.out:
        write_files(Path(args.out), users, args.redis_url)
        print(f"wrote {args.out}/users.acl and {len(users)} .env file(s)")
        return 0
    if args.format == "commands":
        for role, password in users:
            print(shlex.join(redis_acl.setuser_args(role, password)))
    else:
        print(redis_acl.aclfile(users, hashed=False), end="")
    return 0


def database(url: str) -> int:
    return parse_redis_url(url, variable="--redis-url").db


def user_url(url: str, user: str, password: str) -> str:
    """``url`` with this user's credentials."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))


def write_files(out: Path, users: list[tuple[redis_acl.Role, str]], url: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "users.acl").write_text(redis_acl.aclfile(users))
    for role, password in users:
        target = out / f"{role.user}.env"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"# {role.who}\nFLEETSYNC_REDIS_URL={user_url(url, role.user, password)}\n")
