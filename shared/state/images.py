"""The last scan of each image policy, kept in Redis for the status views and the commit.

One JSON string per policy (``keys.image(NAME)``) with the fields of ``FIELDS``: the
repository, the tag and digest the policy picked, why (``policy.choose``'s words),
when, how many tags were considered and ignored, and the last scan's ``error`` (""
after a scan that worked). ``record`` swaps in a new result and returns the record it
replaced, so the caller can say ``1.0.0 -> 1.1.0``; ``record_error`` keeps the last
good tag and digest and sets ``error``, so a registry that is down for a while does
not make the policy forget its choice.

Like all of Redis this is a cache (DESIGN: durable truth): flushed, the next scan
writes it again. The workers write these keys; the CLI, the server and Flower read
them (``scheduler.redis_acl``'s ``image`` prefix). What is stored came from a
registry: text fields are cut and stripped of control characters before they are.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Protocol

from shared.audit import clean
from shared.state import keys

FIELDS = ("policy", "repository", "tag", "digest", "why", "at", "considered", "ignored", "error")
MAX_TEXT = 500
MAX_ERROR = 2000
_SWAP = """
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
return old
"""
_KEEP_CHOICE = """
local old = redis.call('GET', KEYS[1])
local ok, record = pcall(cjson.decode, old or '')
if not ok or type(record) ~= 'table' then record = cjson.decode(ARGV[2]) end
record['error'] = ARGV[1]
record['at'] = tonumber(ARGV[3])
redis.call('SET', KEYS[1], cjson.encode(record))
return old
"""


class Scanned(Protocol):
    """What a scan found (``workers.images.scan.ScanResult`` has these fields)."""

    policy: str
    repository: str
    tag: str
    digest: str
    why: str
    at: float
    considered: int
    ignored: int


def record(r: Any, result: Scanned) -> dict[str, Any] | None:
    """Store ``result`` as its policy's record; return the previous record, or None."""
    fields = {name: getattr(result, name) for name in FIELDS[:-1]}
    old = r.eval(_SWAP, 1, keys.image(result.policy), json.dumps(_cleaned(fields, "")))
    return _decode(old)


def record_error(r: Any, policy: str, message: str, at: float) -> None:
    """Set the policy's ``error`` (its last tag and digest are kept)."""
    empty = _cleaned({"policy": policy, "repository": "", "tag": "", "digest": "", "why": "",
                      "at": at, "considered": 0, "ignored": 0}, message)
    r.eval(_KEEP_CHOICE, 1, keys.image(policy), empty["error"], json.dumps(empty), repr(float(at)))


def load(r: Any, policy: str) -> dict[str, Any] | None:
    """The policy's record, or None when it was never scanned (or Redis was flushed)."""
    return _decode(r.get(keys.image(policy)))


def load_all(r: Any, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The records of ``names`` that exist, by policy name."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    found = r.mget([keys.image(name) for name in wanted])
    out = {}
    for name, raw in zip(wanted, found):
        decoded = _decode(raw)
        if decoded is not None:
            out[name] = decoded
    return out


def _cleaned(fields: dict[str, Any], error: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name in ("at",):
            out[name] = float(value)
        elif name in ("considered", "ignored"):
            out[name] = int(value)
        else:
            out[name] = clean(str(value), MAX_TEXT)
    out["error"] = clean(error, MAX_ERROR)
    return out


def _decode(raw: Any) -> dict[str, Any] | None:
    """A stored record with every field of ``FIELDS`` (of the right type), or None."""
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    defaults: dict[str, Any] = {"at": 0.0, "considered": 0, "ignored": 0}
    try:
        return _cleaned({name: data.get(name, defaults.get(name, ""))
                         for name in FIELDS[:-1]}, str(data.get("error") or ""))
    except (TypeError, ValueError):
        return None
