"""The one compare-and-set every write of the sync-unit protocol goes through.

``shared/state/runs.py`` decides a transition in Python on the snapshot it
assumes, then fills an ``Ops``: the values it assumed (``expects``), the values
it wants back (``read``) and the writes (``add``/``put``). ``Ops.args()`` turns
that into the arguments of ``SCRIPT``, which Redis runs atomically: when any
assumed value differs, it writes nothing and answers ``{0, actual values}`` so
the caller decides again; otherwise it answers ``{1, reads, fencing tokens}``.
The rules stay in Python; the Lua is a dumb, generic compare-and-set, so it
lives apart from the decisions and holds no Redis client of its own.
"""

from __future__ import annotations

import json
from typing import Any

# Compare what the caller assumed; on any difference answer what is there instead, so
# the caller decides again. Else read what it asked for and write. Only the commands
# listed may be written; FENCE draws a fencing token.
SCRIPT = """
local expect, actual, same = cjson.decode(ARGV[1]), {}, true
local plain, names = {}, {}
for i, e in ipairs(expect) do
  if e[2] == '' then plain[#plain + 1] = i; names[#names + 1] = KEYS[e[1]] end
end
if #names > 0 then
  local got = redis.call('MGET', unpack(names))
  for j, i in ipairs(plain) do actual[i] = got[j] or '' end
end
for i, e in ipairs(expect) do
  if e[2] ~= '' then actual[i] = redis.call('HGET', KEYS[e[1]], e[2]) or '' end
  if actual[i] ~= e[3] then same = false end
end
if not same then return {0, actual} end
local reads, tokens = {}, {}
for i, r in ipairs(cjson.decode(ARGV[2])) do
  local v
  if r[2] == '' then v = redis.call('GET', KEYS[r[1]]) else v = redis.call('HGET', KEYS[r[1]], r[2]) end
  reads[i] = v or ''
end
local allowed = {SET=1, DEL=1, HSET=1, PEXPIRE=1, LPUSH=1, LTRIM=1, SADD=1, SREM=1}
for _, op in ipairs(cjson.decode(ARGV[3])) do
  local cmd, key = op[1], KEYS[op[2]]
  if cmd == 'FENCE' then
    local token = tonumber(redis.call('GET', key) or '0') + 1
    if op[3] and tonumber(op[3]) > token then token = tonumber(op[3]) end
    redis.call('SET', key, string.format('%d', token))
    tokens[#tokens + 1] = string.format('%d', token)
  elseif allowed[cmd] then
    local args = {}
    for i = 3, #op do args[#args + 1] = op[i] end
    redis.call(cmd, key, unpack(args))
  else
    return redis.error_reply('command not allowed: ' .. cmd)
  end
end
return {1, reads, tokens}
"""

class Ops:
    """The compare-and-set of one transition: what is assumed, read and written, keys by
    name. Fields written to one hash, and expiries, are merged into one command each."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.expect: list[list[Any]] = []
        self.reads: list[list[Any]] = []
        self.ops: list[list[Any]] = []
        self.hashes: dict[str, dict[str, str]] = {}
        self.expiries: dict[str, int] = {}

    def _k(self, key: str) -> int:
        if key not in self.keys:
            self.keys.append(key)
        return self.keys.index(key) + 1

    def expects(self, key: str, value: str, field: str = "") -> None:
        self.expect.append([self._k(key), field, value])

    def read(self, key: str, field: str = "") -> None:
        self.reads.append([self._k(key), field])

    def add(self, cmd: str, key: str, *args: Any) -> None:
        if cmd == "HSET":
            self.hashes.setdefault(key, {}).update(
                {str(k): str(v) for k, v in zip(args[::2], args[1::2])})
        elif cmd == "PEXPIRE":
            self.expiries[key] = int(args[0])
        else:
            self.ops.append([cmd, self._k(key), *[str(a) for a in args]])

    def put(self, key: str, value: str, ttl_ms: int = 0) -> None:
        """SET (or DEL when empty), with a TTL when given."""
        if not value:
            self.add("DEL", key)
        elif ttl_ms:
            self.add("SET", key, value, "PX", ttl_ms)
        else:
            self.add("SET", key, value)

    def args(self) -> list[str]:
        """The script's arguments: what is assumed, read and written, as JSON."""
        return [json.dumps(self.expect), json.dumps(self.reads), json.dumps(self.writes())]

    def writes(self) -> list[list[Any]]:
        out = list(self.ops)
        for key, fields in self.hashes.items():
            out.append(["HSET", self._k(key), *[x for kv in fields.items() for x in kv]])
        for key, ms in self.expiries.items():
            out.append(["PEXPIRE", self._k(key), str(ms)])
        return out
