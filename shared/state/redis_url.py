"""``FLEETSYNC_REDIS_URL``, read in one place: one Redis, or a primary found through Sentinel.

Two forms::

    redis://[user:password@]host:6379/0          (also rediss:// for TLS, unix://)
    sentinel://[user:password@]host1:26379,host2:26379/0?master=mymaster

The Sentinel form lists the sentinels (any number, comma-separated, port 26379
when omitted), the database, and the name the sentinels know the primary by.
The user and password are those of the primary and its replicas; the sentinels
themselves are asked without them. Every client that fleetsync builds goes
through ``parse``: the state store (``shared.state.redisconn``) and Celery's broker
and result backend (``celery_config``), so all of them follow the same primary
after a failover. A URL that cannot be used is refused here, naming the
variable and what is wrong, with its password masked.

Pure: no client is built here, so the CLI can check a URL without Redis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from shared.errors import FleetsyncError

VARIABLE = "FLEETSYNC_REDIS_URL"
SENTINEL_PORT = 26379
SCHEMES = ("redis", "rediss", "unix", "sentinel")
# How long a sentinel may take to answer "who is the primary?" before the next is asked.
SENTINEL_TIMEOUTS = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}


class RedisURLError(FleetsyncError):
    """``FLEETSYNC_REDIS_URL`` (or ``--redis-url``) cannot be used."""


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: ``url`` for one server, or ``sentinels`` plus ``master``."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    def describe(self) -> str:
        """Host, port and database, never the password: names a state file or a log line."""
        if self.is_sentinel:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel {self.master}@{hosts}/{self.db}"
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{self.db}"


def redact(url: str) -> str:
    """The URL without its password, for messages (both forms, any number of hosts)."""
    return re.sub(r"(//[^/@:;,]*:)[^@/;]*@", r"\1***@", url)


def _error(url: str, what: str, variable: str) -> RedisURLError:
    return RedisURLError(f"{variable}={redact(url)!r}: {what}")


def parse(url: str, variable: str = VARIABLE) -> RedisTarget:
    """Read a Redis URL; a clear ``RedisURLError`` naming ``variable`` when it is unusable."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise _error(url, f"the scheme must be one of {', '.join(s + '://' for s in SCHEMES)} "
                          f"(got {parts.scheme + '://' if parts.scheme else 'none'})", variable)
    db = _database(url, parts.path if parts.scheme != "unix" else "", parts.query, variable)
    if parts.scheme != "sentinel":
        return RedisTarget(url=url, db=db)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"master"})
    if unknown:
        raise _error(url, f"unknown parameter(s) {', '.join(unknown)}; a Sentinel URL takes "
                          "only ?master=NAME", variable)
    master = (query.get("master") or [""])[-1]
    if not master:
        raise _error(url, "a Sentinel URL needs the primary's name: ?master=NAME (as in "
                          "'sentinel monitor NAME ...' of the sentinels' configuration)", variable)
    return RedisTarget(url=url, sentinels=_sentinels(url, hosts, variable), master=master, db=db,
                       username=unquote(username) or None,
                       password=unquote(password) if userinfo and password else None)


def _database(url: str, path: str, query: str, variable: str) -> int:
    path = path.strip("/")
    if not path:
        found = parse_qs(query).get("db")
        path = found[-1] if found else "0"
    if not path.isdigit():
        raise _error(url, f"the database must be a number (got {path!r})", variable)
    return int(path)


def _sentinels(url: str, hosts: str, variable: str) -> tuple[tuple[str, int], ...]:
    found = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        host = host.strip("[]")
        if not host:
            raise _error(url, f"sentinel {item.strip()!r} has no host; list them as "
                              "host1:26379,host2:26379", variable)
        if colon and not port.isdigit():
            raise _error(url, f"sentinel {item.strip()!r}: the port must be a number", variable)
        found.append((host, int(port) if colon else SENTINEL_PORT))
    return tuple(found)


def celery_config(url: str) -> dict[str, Any]:
    """Celery's broker and result backend settings for this URL (``app.conf`` keys).

    For Sentinel, kombu's and celery's ``sentinel://`` transports: one
    ``sentinel://`` address per sentinel joined by ``;`` (the first carries the
    credentials and the database) and the primary's name as the transport option
    ``master_name``. They re-ask the sentinels after a connection breaks.
    """
    target = parse(url)
    if not target.is_sentinel:
        return {"broker_url": url, "result_backend": url}
    auth = ""
    if target.password is not None or target.username:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password or '', safe='')}@"
    addresses = ";".join(f"sentinel://{auth}{host}:{port}/{target.db}"
                         for host, port in target.sentinels)
    options = {"master_name": target.master, "sentinel_kwargs": dict(SENTINEL_TIMEOUTS)}
    return {"broker_url": addresses, "result_backend": addresses,
            "broker_transport_options": options, "result_backend_transport_options": options}
