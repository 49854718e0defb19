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
# the caller decides again. Else answer what it asked for and write. Every value is
# read in one MGET (plain keys) and one HMGET per hash, assumed and asked for alike (the
# script is atomic: reading early changes nothing). Only the commands listed may be
# written; FENCE draws a fencing token; LPUSHCAP pushes and trims the list to a length
# only when it grew past it.
SCRIPT = """
local expect, wanted, actual, same = cjson.decode(ARGV[1]), cjson.decode(ARGV[2]), {}, true
local plain, hashes, order, got = {}, {}, {}, {}
local function want(k, f)
  local id = k .. ' ' .. f
  if got[id] ~= nil then return end
  got[id] = false
  if f == '' then plain[#plain + 1] = id
  else
    if hashes[k] == nil then hashes[k] = {}; order[#order + 1] = k end
    hashes[k][#hashes[k] + 1] = f
  end
end
for _, e in ipairs(expect) do want(e[1], e[2]) end
for _, r in ipairs(wanted) do want(r[1], r[2]) end
if #plain > 0 then
  local names = {}
  for j, id in ipairs(plain) do names[j] = KEYS[tonumber(string.match(id, '^%d+'))] end
  local values = redis.call('MGET', unpack(names))
  for j, id in ipairs(plain) do got[id] = values[j] end
end
for _, k in ipairs(order) do
  local values = redis.call('HMGET', KEYS[k], unpack(hashes[k]))
  for j, f in ipairs(hashes[k]) do got[k .. ' ' .. f] = values[j] end
end
local function value(k, f) return got[k .. ' ' .. f] or '' end
for i, e in ipairs(expect) do
  actual[i] = value(e[1], e[2])
  if actual[i] ~= e[3] then same = false end
end
if not same then return {0, actual} end
local reads, tokens = {}, {}
for i, r in ipairs(wanted) do reads[i] = value(r[1], r[2]) end
local allowed = {SET=1, DEL=1, HSET=1, PEXPIRE=1, LPUSH=1, LTRIM=1, SADD=1, SREM=1}
for _, op in ipairs(cjson.decode(ARGV[3])) do
  local cmd, key = op[1], KEYS[op[2]]
  if cmd == 'FENCE' and not op[3] then
    tokens[#tokens + 1] = string.format('%d', redis.call('INCR', key))
  elseif cmd == 'FENCE' then
    local token = tonumber(redis.call('GET', key) or '0') + 1
    if tonumber(op[3]) > token then token = tonumber(op[3]) end
    redis.call('SET', key, string.format('%d', token))
    tokens[#tokens + 1] = string.format('%d', token)
  elseif cmd == 'LPUSHCAP' then
    if redis.call('LPUSH', key, op[3]) > tonumber(op[4]) then
      redis.call('LTRIM', key, 0, tonumber(op[4]) - 1)
    end
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
