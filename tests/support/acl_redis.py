"""A real redis-server that knows only the ACL users ``fleetsync redis-acl`` generates.

Its ``default`` user is off, as in the generated file; the tests themselves
connect as ``admin`` (added here, never generated) to set up and inspect.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import redis

from devtools import fleet as devfleet
from scheduler import redis_acl
from tests.conftest import need

ADMIN = "admin"


@dataclass
class AclRedis:
    port: int
    passwords: dict[str, str]
    proc: subprocess.Popen

    def url(self, user: str, db: int = 0) -> str:
        return f"redis://{user}:{self.passwords[user]}@127.0.0.1:{self.port}/{db}"

    def client(self, user: str, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(user, db))

    def denials(self, user: str) -> list[dict]:
        """What ACL LOG recorded as refused for ``user``."""
        return [e for e in self.client(ADMIN).acl_log(200) if e.get("username") == user]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start(tmp: Path, clusters: Iterable[str], pull: Iterable[str]) -> AclRedis:
    binary = shutil.which("redis-server")
    if binary is None:
        need("redis-server", "install it with apt-get install redis-server")
    users = [(role, redis_acl.new_password()) for role in redis_acl.roles(clusters, pull)]
    passwords = {role.user: password for role, password in users}
    passwords[ADMIN] = redis_acl.new_password()
    acl = tmp / "users.acl"
    acl.write_text(redis_acl.aclfile(users)
                   + f"user {ADMIN} on >{passwords[ADMIN]} ~* &* +@all\n")
    port = devfleet.free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp), "--aclfile", str(acl)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = AclRedis(port, passwords, proc)
    deadline = time.monotonic() + 10
    while not _answers(server):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            need("redis-server", f"did not start with the ACL file on port {port}")
        time.sleep(0.05)
    return server


def _answers(server: AclRedis) -> bool:
    try:
        return bool(server.client(ADMIN).ping())
    except redis.ConnectionError:
        return False
