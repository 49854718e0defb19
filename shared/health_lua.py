"""Argo CD-compatible health scripts (``health.lua``) as a pure kernel.

A fleet may carry Argo CD's ``resource_customizations/<group>/<kind>/health.lua``
tree, or inline scripts keyed ``"group/Kind"``. :meth:`LuaScripts.from_dir`
compiles every script once (a parse error is a :class:`LuaError` with file and
line); the health verdict calls :meth:`LuaScripts.lookup` and
:meth:`LuaCheck.evaluate` per object and wraps the ``(status_word, message)``.

The contract is Argo CD's (util/lua/lua.go, oslib_safe.go): the object is the
global ``obj`` (JSON null is nil, an empty object or list an empty table, numbers
stay numbers); the script returns ``{status = ..., message = ...}`` with status
one of Healthy, Progressing, Degraded, Suspended, Missing, Unknown. Argo CD
opens the base, table, string, math libraries and a safe ``os`` with only
``os.time`` and ``os.date`` (also through ``require("os")``), and stops a script
after one second. Missing means "not there yet" in Argo CD; for an object we
have just read it is mapped to Progressing, with the script's message.
Anything else is ``("Unknown", "lua: <script>: ...")``, never an exception.

Runtime: LuaJIT 2.1 through ``lupa.luajit21`` (Argo CD's scripts use both
``goto`` and ``table.getn``). The sandbox, and why each part is there:

- each run gets a fresh environment holding copies of the safe libraries, so
  a script can neither see nor damage another's globals or library tables; the
  string metatable is locked so ``getmetatable("")`` cannot reach ``string``;
- absent: ``io``, full ``os``, ``package``, ``debug``, ``jit``, ``ffi``,
  ``coroutine`` (a new coroutine would run without our hook), ``dofile``,
  ``loadfile``, ``load``, ``loadstring``, ``setfenv``, ``getfenv``,
  ``collectgarbage``, ``newproxy``, ``string.dump``, lupa's ``python``;
- instructions: a count hook; LuaJIT calls hooks only in interpreted code, so
  the JIT is off for this runtime. The hook also checks a wall-clock deadline.
  Once a limit is hit the hook fails at every step and ``pcall``/``xpcall``
  re-raise, so a script cannot catch its way past the limit;
- memory: lupa's ``max_memory`` on the runtime (this LuaJIT build honours it:
  tests allocate past it); after a failed run the garbage is collected.
- Not bounded: a single C call such as ``string.find`` with a pathological
  pattern runs to its end (no hook fires inside C), as in gopher-lua.

One runtime per :class:`LuaScripts`, guarded by a lock: lupa runtimes are not
thread-safe, so evaluations on one instance run one at a time.
"""

from __future__ import annotations

import datetime
import fnmatch
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import lupa.luajit21 as lupa

from shared.errors import SpecError

Verdict = tuple[str, str]
_STATUSES = {"Healthy": "Healthy", "Progressing": "Progressing", "Degraded": "Degraded",
             "Suspended": "Suspended", "Unknown": "Unknown", "Missing": "Progressing"}


class LuaError(SpecError):
    """A health script that does not parse: ``path:line: message``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__([f"{where}: {message}"])
        self.path = path
        self.line = line
        self.detail = message


@dataclass(frozen=True)
class LuaLimits:
    """Bounds of one script run; Argo CD itself has only the one-second timeout."""

    instructions: int = 5_000_000       # VM instructions, counted by the hook
    seconds: float = 1.0                # wall clock, as Argo CD's context timeout
    memory_bytes: int = 64 * 1024 * 1024   # the whole runtime: scripts and objects
    hook_step: int = 1000               # instructions between two hook calls


# The sandbox, built once per runtime. It returns `compile` and `run`; everything
# dangerous stays in their upvalues, which no script can reach without `debug`.
_BOOTSTRAP = r"""
local limits, clock = ...
local sethook, setfenv, loadstring = debug.sethook, setfenv, loadstring
local pcall, xpcall, error, type, rawget, pairs = pcall, xpcall, error, type, rawget, pairs
local collectgarbage, setmetatable = collectgarbage, setmetatable
jit.off(); jit.flush()
local smt = getmetatable("")
smt.__metatable = false

local LIMIT = "lua sandbox: limit exceeded"
local hit, steps, deadline = nil, 0, 0
local function hook()
  if hit == nil then
    steps = steps + 1
    if steps * limits.hook_step > limits.instructions then
      hit = "instruction limit of " .. limits.instructions .. " exceeded"
    elseif clock() > deadline then
      hit = "time limit of " .. limits.seconds .. " s exceeded"
    end
  end
  if hit ~= nil then error(LIMIT, 0) end
end

local function rethrow(ok, ...)
  if hit ~= nil then error(LIMIT, 0) end
  return ok, ...
end
local function safe_pcall(f, ...) return rethrow(pcall(f, ...)) end
local function safe_xpcall(f, h) return rethrow(xpcall(f, h)) end

-- A library reaches a script as an empty table reading through a locked
-- metatable: writes land in that run's own table, the shared one stays intact.
local function readonly(t)
  local mt = {__index = t, __metatable = false}
  return function() return setmetatable({}, mt) end
end
local no_dump = {}
for k, v in pairs(string) do if k ~= "dump" then no_dump[k] = v end end
local libs = {string = readonly(no_dump), table = readonly(table), math = readonly(math),
  os = readonly({time = os.time, date = os.date})}
local base = {}
for _, name in ipairs({"assert", "error", "ipairs", "next", "pairs", "rawequal", "rawget",
  "rawset", "select", "setmetatable", "getmetatable", "tonumber", "tostring",
  "type", "unpack", "_VERSION"}) do base[name] = _G[name] end
base.pcall, base.xpcall, base.print = safe_pcall, safe_xpcall, function() end
local function require_safe(name)
  if name == "os" then return libs.os() end
  error("module '" .. tostring(name) .. "' not found", 2)
end

local function environment(obj)
  local env = {obj = obj, require = require_safe, string = libs.string(),
    table = libs.table(), math = libs.math(), os = libs.os()}
  for k, v in pairs(base) do env[k] = v end
  env._G = env
  return env
end

local function compile(source, chunkname)
  local fn, err = loadstring(source, chunkname)
  if fn == nil then return nil, err end
  return fn, false
end

local function describe(ok, res)
  if not ok then
    if res == LIMIT then return "error", hit end
    if type(res) == "string" then return "error", res end
    return "error", "error object of type " .. type(res)
  end
  if type(res) ~= "table" then return "type", type(res) end
  local status, message = rawget(res, "status"), rawget(res, "message")
  if type(status) ~= "string" then status = "<" .. type(status) .. ">" end
  if message ~= nil and type(message) ~= "string" then
    return "message", type(message)
  end
  return "ok", status, message
end

local function run(fn, obj)
  hit, steps, deadline = nil, 0, clock() + limits.seconds
  setfenv(fn, environment(obj))
  sethook(hook, "", limits.hook_step)
  local ok, res = pcall(fn)
  local done, kind, a, b = pcall(describe, ok, res)
  sethook()
  if not done then kind, a, b = "error", "not enough memory" end
  if kind == "error" then collectgarbage() end
  return kind, a, b
end

return compile, run
"""


class _Runtime:
    """One LuaJIT state with the sandbox installed; every call holds the lock."""

    def __init__(self, limits: LuaLimits) -> None:
        self._lock = threading.Lock()
        self._lua = lupa.LuaRuntime(register_eval=False, register_builtins=False,
                                    unpack_returned_tuples=True,
                                    max_memory=limits.memory_bytes)
        setup = self._lua.execute(_BOOTSTRAP, self._lua.table_from({
            "instructions": limits.instructions, "seconds": limits.seconds,
            "hook_step": limits.hook_step}), time.monotonic)
        self._compile, self._run = setup
        for name in ("python", "jit", "debug", "io", "os", "package", "require",
                     "dofile", "loadfile", "load", "loadstring", "module", "ffi"):
            self._lua.globals()[name] = None

    def compile(self, source: str, name: str, path: str | None = None) -> Any:
        """The compiled chunk, or LuaError with the line Lua reports.

        ``name`` is the short chunk name Lua puts in messages (LuaJIT cuts long
        ones); ``path`` is what the error names, the whole file path.
        """
        where = path or name
        if source.startswith("\x1b"):
            raise LuaError(where, None, "precompiled bytecode is not accepted")
        with self._lock:
            try:
                fn, err = self._compile(source, "@" + name)
            except lupa.LuaError as exc:
                raise LuaError(where, None, str(exc)) from exc
        if fn is None:
            raise LuaError(where, *_split_location(str(err), name))
        return fn

    def run(self, fn: Any, obj: Mapping[str, Any]) -> tuple[str, Any, Any]:
        with self._lock:
            try:
                table = self._lua.table_from(_clean(obj), recursive=True)
                return tuple(self._run(fn, table))     # type: ignore[return-value]
            except lupa.LuaMemoryError:
                self._lua.gccollect()
                return ("error", "not enough memory", None)
            except lupa.LuaError as exc:
                return ("error", str(exc), None)


def _split_location(err: str, name: str) -> tuple[int | None, str]:
    """``name:12: message`` -> (12, message), as LuaJIT formats a syntax error."""
    prefix = name + ":"
    if err.startswith(prefix):
        line, _, message = err[len(prefix):].partition(": ")
        if line.isdigit():
            return int(line), message
    return None, err


def _clean(value: Any) -> Any:
    """JSON as Argo CD hands it to Lua: nulls dropped (nil), containers kept even when empty.

    Only JSON's types reach Lua: a timestamp YAML parsed into a ``datetime`` is the
    string the API server would have sent (Argo CD reads YAML through JSON, so a
    script compares it as text), a non-string key is its text, and any other
    Python object is its ``str``: a Python object in Lua would be a lupa wrapper,
    with attribute access into Python. Concrete type checks: an ABC
    ``isinstance`` per node would cost more than the whole Lua run.
    """
    if isinstance(value, dict):
        return {k if type(k) is str else _key(k):
                v if type(v) in _PLAIN else _clean(v)
                for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _PLAIN else _clean(v) for v in value if v is not None]
    if isinstance(value, Mapping):
        return _clean(dict(value))
    if type(value) in _PLAIN or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, datetime.datetime):
        return _rfc3339(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


_PLAIN = frozenset({str, int, float, bool})


def _key(key: Any) -> str:
    """A mapping key as JSON has it: YAML's ``true``/``1``/dates as their text."""
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(_clean(key))


def _rfc3339(value: datetime.datetime) -> str:
    """``2021-11-16T21:59:34Z`` as Kubernetes writes it; a naive time is taken as UTC."""
    offset = value.utcoffset()
    text = value.replace(tzinfo=None).isoformat()
    if offset is None or not offset:
        return text + "Z"
    return text + value.isoformat()[-6:]


@dataclass(frozen=True)
class LuaCheck:
    """One compiled health script; evaluate it for any number of objects."""

    name: str
    _fn: Any
    _runtime: _Runtime

    def evaluate(self, obj: Mapping[str, Any]) -> Verdict:
        """The script's verdict; a failing or misbehaving script gives Unknown."""
        kind, first, second = self._runtime.run(self._fn, obj)
        if kind == "error":
            return ("Unknown", f"lua: {self.name}: {first}")
        if kind == "type":
            return ("Unknown", f"lua: {self.name}: script returned a {first}, not a table")
        if kind == "message":
            return ("Unknown", f"lua: {self.name}: script returned a message of type {first}")
        word = _STATUSES.get(first)
        if word is None:
            return ("Unknown", f"lua: {self.name}: script returned an invalid health "
                               f"status {first!r}")
        return (word, second or "")


class LuaScripts:
    """Every health script of a fleet, compiled once, looked up by group and kind.

    Precedence, as Argo CD's: an inline script for the exact key, then an inline
    key with ``*`` wildcards (Argo CD's resource overrides), then the directory's
    exact ``group/kind``, then its wildcard directories, where ``_`` in a name
    stands for ``*`` (Argo CD's ``_.crossplane.io/_``). Among several wildcards
    the one with the most literal characters wins.
    """

    def __init__(self, tiers: list[dict[str, LuaCheck] | list[tuple[str, LuaCheck]]]) -> None:
        self._tiers = tiers             # in precedence order: exact dicts, wildcard lists

    @classmethod
    def from_dir(cls, path: str | Path | None, *, inline: Mapping[str, str] | None = None,
                 limits: LuaLimits | None = None) -> "LuaScripts":
        """Compile the tree under ``path`` and the inline scripts; LuaError on a bad one."""
        runtime = _Runtime(limits or LuaLimits())
        inline_checks = [(key, LuaCheck(key, runtime.compile(src, f"inline:{key}"), runtime))
                         for key, src in (inline or {}).items()]
        dir_checks = [(key.replace("_", "*"), LuaCheck(key, runtime.compile(
                           file.read_text(), f"{key}/health.lua", str(file)), runtime))
                      for key, file in _scripts_under(path)]
        tiers: list[dict[str, LuaCheck] | list[tuple[str, LuaCheck]]] = []
        for checks in (inline_checks, dir_checks):
            tiers.append({k: c for k, c in checks if "*" not in k})
            tiers.append(sorted(((k, c) for k, c in checks if "*" in k),
                                key=lambda e: (-len(e[0].replace("*", "")), e[0])))
        return cls(tiers)

    def lookup(self, group: str, kind: str) -> LuaCheck | None:
        """The script for this group and kind (core group: ``""``), or None."""
        key = f"{group}/{kind}" if group else kind
        for tier in self._tiers:
            if isinstance(tier, dict):
                if key in tier:
                    return tier[key]
                continue
            for pattern, check in tier:
                if fnmatch.fnmatchcase(key, pattern):
                    return check
        return None


def _scripts_under(path: str | Path | None) -> list[tuple[str, Path]]:
    """``(key, file)`` for ``<group>/<kind>/health.lua`` and core ``<kind>/health.lua``."""
    if path is None:
        return []
    root = Path(path)
    if (root / "resource_customizations").is_dir():
        root = root / "resource_customizations"
    found = []
    for file in sorted(root.glob("*/health.lua")) + sorted(root.glob("*/*/health.lua")):
        found.append(("/".join(file.relative_to(root).parts[:-1]), file))
    return found
