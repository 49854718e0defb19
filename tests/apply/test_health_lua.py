"""Argo CD-compatible Lua health scripts and their sandbox, pure (no cluster)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from shared.errors import SpecError
from shared.health_lua import LuaError, LuaLimits, LuaScripts

# In the style of Argo CD's resource_customizations: goto, table.getn, ipairs.
CERTIFICATE = """\
local hs = {}
if obj.status ~= nil then
  if obj.status.conditions ~= nil then
    for i, condition in ipairs(obj.status.conditions) do
      if condition.type == "Ready" and condition.status == "False" then
        hs.status = "Degraded"
        hs.message = condition.message
        return hs
      end
      if condition.type == "Ready" and condition.status == "True" then
        hs.status = "Healthy"
        hs.message = condition.message
        return hs
      end
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for certificate"
return hs
"""

CROSSPLANE = """\
health_status = {status = "Progressing", message = "Waiting for conditions"}
if obj.status == nil or obj.status.conditions == nil then
  return health_status
end
local ready, synced = false, false
for i = 1, table.getn(obj.status.conditions) do
  local c = obj.status.conditions[i]
  if c.type == "Synced" then
    if c.status ~= "True" then
      health_status.status = "Degraded"
      health_status.message = c.message
      goto done
    end
    synced = true
  end
  if c.type == "Ready" and c.status == "True" then ready = true end
end
if ready and synced then health_status.status = "Healthy"; health_status.message = "ok" end
::done::
return health_status
"""

SUSPEND = """\
if obj.spec.suspend == true then
  return {status = "Suspended", message = "suspended since " .. os.date("!%Y", 0)}
end
return {status = "Missing", message = "not created yet"}
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("argo")
    rc = base / "resource_customizations"
    for key, src in {"cert-manager.io/Certificate": CERTIFICATE,
                     "_.crossplane.io/_": CROSSPLANE,
                     "batch.example.com/CronThing": SUSPEND,
                     "Widget": "return {status = 'Healthy', message = 'core'}"}.items():
        (rc / key).mkdir(parents=True)
        (rc / key / "health.lua").write_text(src)
    (rc / "cert-manager.io" / "Certificate" / "actions").mkdir()
    return base


@pytest.fixture(scope="module")
def scripts(tree: Path) -> LuaScripts:
    return LuaScripts.from_dir(tree / "resource_customizations", inline=SANDBOX)


def cert(ready: str, message: str = "Certificate is up to date") -> dict[str, Any]:
    return {"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "a", "generation": 1, "labels": {}},
            "status": {"conditions": [
                {"type": "Issuing", "status": "False"},
                {"type": "Ready", "status": ready, "message": message}]}}


def test_certificate_verdicts(scripts: LuaScripts) -> None:
    check = scripts.lookup("cert-manager.io", "Certificate")
    assert check is not None
    assert check.evaluate(cert("True")) == ("Healthy", "Certificate is up to date")
    assert check.evaluate(cert("False", "bad issuer")) == ("Degraded", "bad issuer")
    assert check.evaluate({"status": {}}) == ("Progressing", "Waiting for certificate")
    assert check.evaluate({}) == ("Progressing", "Waiting for certificate")


def test_wildcard_directory_with_goto_and_getn(scripts: LuaScripts) -> None:
    check = scripts.lookup("ec2.aws.crossplane.io", "Instance")
    assert check is not None and check.name == "_.crossplane.io/_"
    ok = {"status": {"conditions": [{"type": "Synced", "status": "True"},
                                    {"type": "Ready", "status": "True"}]}}
    bad = {"status": {"conditions": [{"type": "Synced", "status": "False", "message": "no"}]}}
    assert check.evaluate(ok) == ("Healthy", "ok")
    assert check.evaluate(bad) == ("Degraded", "no")
    assert scripts.lookup("crossplane.io.evil.com", "X") is None


def test_globals_do_not_leak_between_runs(scripts: LuaScripts) -> None:
    check = scripts.lookup("x.crossplane.io", "Y")
    assert check is not None
    check.evaluate({"status": {"conditions": [{"type": "Synced", "status": "False"}]}})
    assert check.evaluate({}) == ("Progressing", "Waiting for conditions")


def test_core_kind_suspended_and_missing(scripts: LuaScripts) -> None:
    assert scripts.lookup("", "Widget").evaluate({}) == ("Healthy", "core")  # type: ignore[union-attr]
    thing = scripts.lookup("batch.example.com", "CronThing")
    assert thing is not None
    assert thing.evaluate({"spec": {"suspend": True}}) == ("Suspended", "suspended since 1970")
    # Missing (Argo CD: not there yet) is Progressing for an object we have read.
    assert thing.evaluate({"spec": {}}) == ("Progressing", "not created yet")
    assert scripts.lookup("batch.example.com", "Other") is None


def test_parent_directory_and_inline_precedence(tree: Path) -> None:
    inline = {"cert-manager.io/Certificate": "return {status = 'Suspended'}",
              "*.crossplane.io/Bucket": "return {status = 'Degraded', message = 'inline'}"}
    scripts = LuaScripts.from_dir(tree, inline=inline)
    assert scripts.lookup("cert-manager.io", "Certificate").evaluate({})[0] == "Suspended"  # type: ignore[union-attr]
    assert scripts.lookup("s3.crossplane.io", "Bucket").evaluate({}) == ("Degraded", "inline")  # type: ignore[union-attr]
    assert scripts.lookup("s3.crossplane.io", "Other").name == "_.crossplane.io/_"  # type: ignore[union-attr]


def test_json_conversion_keeps_empty_tables_and_numbers() -> None:
    src = ("return {status = 'Healthy', message = type(obj.spec.a) .. ',' .. type(obj.spec.b)"
           " .. ',' .. tostring(obj.spec.c) .. ',' .. type(obj.spec.n) .. ',' .. obj.spec.n"
           " .. ',' .. #obj.spec.list .. ',' .. tostring(obj.spec.flag)}")
    check = LuaScripts.from_dir(None, inline={"a/B": src}).lookup("a", "B")
    obj = {"spec": {"a": {}, "b": [], "c": None, "n": 3, "list": [1, None, 2], "flag": False}}
    assert check.evaluate(obj) == ("Healthy", "table,table,nil,number,3,2,false")  # type: ignore[union-attr]


def test_parse_error_names_file_and_line(tmp_path: Path) -> None:
    target = tmp_path / "resource_customizations" / "x.io" / "Broken"
    target.mkdir(parents=True)
    (target / "health.lua").write_text("local hs = {}\nif obj.status then\nhs.status = = 1\nend\nreturn hs\n")
    with pytest.raises(LuaError) as info:
        LuaScripts.from_dir(tmp_path)
    assert info.value.path.endswith("x.io/Broken/health.lua")
    assert info.value.line == 3
    assert isinstance(info.value, SpecError)
    assert "health.lua:3: " in info.value.problems[0]


def test_inline_parse_error() -> None:
    with pytest.raises(LuaError) as info:
        LuaScripts.from_dir(None, inline={"a/B": "return {status = }"})
    assert info.value.path == "inline:a/B" and info.value.line == 1


def test_bytecode_is_refused() -> None:
    with pytest.raises(LuaError):
        LuaScripts.from_dir(None, inline={"a/B": "\x1bLJ\x02garbage"})


# --- the sandbox --------------------------------------------------------------------

SANDBOX = {
    "x/Loop": "while true do end",
    "x/CatchLoop": "while true do pcall(function() while true do end end) end",
    "x/Alloc": "local t = {} while true do t[#t+1] = string.rep('x', 1e6) end",
    "x/AllocUnique": "local t = {} while true do t[#t+1] = string.rep('x', 1e6) .. #t end",
    "x/BigRep": "local s = string.rep('x', 1e9) return {status = 'Healthy'}",
    "x/Execute": "os.execute('touch /tmp/fleetsync-lua-pwned')",
    "x/Io": "local f = io.open('/etc/passwd') return {status = 'Healthy'}",
    "x/Require": "local io = require('io') return {status = 'Healthy'}",
    "x/RequireOs": "local os = require('os') return {status = 'Healthy', "
                   "message = type(os.time()) .. type(os.execute)}",
    "x/Error": "error('boom')",
    "x/ErrorTable": "error(setmetatable({}, {__tostring = function() while true do end end}))",
    "x/Number": "return 42",
    "x/Nothing": "local x = 1",
    "x/BadStatus": "return {status = 'Great'}",
    "x/BadMessage": "return {status = 'Healthy', message = {}}",
    "x/Escape": "return {status = 'Healthy', message = table.concat({type(debug), type(load),"
                " type(loadstring), type(dofile), type(loadfile), type(setfenv), type(getfenv),"
                " type(collectgarbage), type(string.dump), type(package), type(jit),"
                " type(python), type(coroutine), type(io), tostring(getmetatable(''))}, ',')}",
    "x/Poison": "string.rep = nil; table.insert = nil; math.floor = nil; return {status='Healthy'}",
    "x/Recurse": "local function f(n) return f(n + 1) + 1 end return f(1)",
}


@pytest.mark.parametrize("key, expected", [
    ("x/Loop", "lua: x/Loop: instruction limit of 5000000 exceeded"),
    ("x/CatchLoop", "lua: x/CatchLoop: instruction limit of 5000000 exceeded"),
    ("x/AllocUnique", "lua: x/AllocUnique: "),
    ("x/BigRep", "lua: x/BigRep: "),
    ("x/Execute", "lua: x/Execute: inline:x/Execute:1: attempt to call field 'execute'"),
    ("x/Io", "lua: x/Io: inline:x/Io:1: attempt to index global 'io'"),
    ("x/Require", "lua: x/Require: inline:x/Require:1: module 'io' not found"),
    ("x/Error", "lua: x/Error: inline:x/Error:1: boom"),
    ("x/ErrorTable", "lua: x/ErrorTable: error object of type table"),
    ("x/Number", "lua: x/Number: script returned a number, not a table"),
    ("x/Nothing", "lua: x/Nothing: script returned a nil, not a table"),
    ("x/BadStatus", "lua: x/BadStatus: script returned an invalid health status 'Great'"),
    ("x/BadMessage", "lua: x/BadMessage: script returned a message of type table"),
    ("x/Recurse", "lua: x/Recurse: "),
])
def test_misbehaving_scripts_are_unknown(scripts: LuaScripts, key: str, expected: str) -> None:
    started = time.monotonic()
    word, message = scripts.lookup(*key.split("/")).evaluate({})  # type: ignore[union-attr]
    assert word == "Unknown"
    assert message.startswith(expected), message
    assert time.monotonic() - started < 2.0


def test_unbounded_allocation_is_stopped(scripts: LuaScripts) -> None:
    # The same 1 MB string is interned, so this one ends on the wall clock...
    word, message = scripts.lookup("x", "Alloc").evaluate({})  # type: ignore[union-attr]
    assert word == "Unknown" and "limit" in message
    # ...and distinct strings end on the memory limit.
    word, message = scripts.lookup("x", "AllocUnique").evaluate({})  # type: ignore[union-attr]
    assert (word, message) == ("Unknown", "lua: x/AllocUnique: not enough memory")


def test_memory_limit_is_enforced_for_one_huge_allocation(scripts: LuaScripts) -> None:
    assert scripts.lookup("x", "BigRep").evaluate({}) == (  # type: ignore[union-attr]
        "Unknown", "lua: x/BigRep: not enough memory")


def test_wall_clock_limit() -> None:
    limits = LuaLimits(instructions=10**12, seconds=0.2)
    check = LuaScripts.from_dir(None, inline={"x/L": "while true do end"}, limits=limits)
    started = time.monotonic()
    assert check.lookup("x", "L").evaluate({}) == (  # type: ignore[union-attr]
        "Unknown", "lua: x/L: time limit of 0.2 s exceeded")
    assert time.monotonic() - started < 1.0


def test_os_execute_ran_nothing(scripts: LuaScripts) -> None:
    scripts.lookup("x", "Execute").evaluate({})  # type: ignore[union-attr]
    assert not os.path.exists("/tmp/fleetsync-lua-pwned")


def test_safe_os_through_require(scripts: LuaScripts) -> None:
    assert scripts.lookup("x", "RequireOs").evaluate({}) == (  # type: ignore[union-attr]
        "Healthy", "numbernil")


def test_nothing_dangerous_is_reachable(scripts: LuaScripts) -> None:
    _, message = scripts.lookup("x", "Escape").evaluate({})  # type: ignore[union-attr]
    assert message == ",".join(["nil"] * 14 + ["false"])


def test_a_script_cannot_damage_the_libraries_of_the_next(scripts: LuaScripts) -> None:
    assert scripts.lookup("x", "Poison").evaluate({})[0] == "Healthy"  # type: ignore[union-attr]
    check = scripts.lookup("cert-manager.io", "Certificate")
    assert check.evaluate(cert("True"))[0] == "Healthy"  # type: ignore[union-attr]
    src = "return {status = 'Healthy', message = string.rep('a', 2) .. math.floor(1.5)}"
    again = LuaScripts.from_dir(None, inline={"a/B": src})
    assert again.lookup("a", "B").evaluate({}) == ("Healthy", "aa1")  # type: ignore[union-attr]


def test_runtime_still_works_after_every_failure(scripts: LuaScripts) -> None:
    for key in SANDBOX:
        if key not in ("x/Alloc",):
            scripts.lookup(*key.split("/")).evaluate({})  # type: ignore[union-attr]
    assert scripts.lookup("cert-manager.io", "Certificate").evaluate(  # type: ignore[union-attr]
        cert("True")) == ("Healthy", "Certificate is up to date")


# In the style of Argo CD's external-secrets.io/ExternalSecret: timestamps compared as text.
REFRESHED = """\
local hs = {status = "Progressing", message = "Waiting for ExternalSecret"}
for i, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" and condition.lastTransitionTime >= obj.status.refreshTime then
    hs.status = "Healthy"
    hs.message = type(obj.status.refreshTime) .. " " .. obj.status.refreshTime
  end
end
return hs
"""


def test_yaml_timestamps_reach_lua_as_the_api_servers_text(tmp_path: Path) -> None:
    import datetime
    folder = tmp_path / "external-secrets.io" / "ExternalSecret"
    folder.mkdir(parents=True)
    (folder / "health.lua").write_text(REFRESHED)
    check = LuaScripts.from_dir(tmp_path).lookup("external-secrets.io", "ExternalSecret")
    assert check is not None
    utc = datetime.timezone.utc
    obj = {"status": {"refreshTime": datetime.datetime(2021, 11, 16, 21, 59, 34, tzinfo=utc),
                      "conditions": [{"type": "Ready", "status": "True",
                                      "lastTransitionTime": "2021-11-16T22:59:34Z"}]}}
    assert check.evaluate(obj) == ("Healthy", "string 2021-11-16T21:59:34Z")


def test_no_python_object_reaches_a_script(tmp_path: Path) -> None:
    """A lupa wrapper would give attribute access into Python (``x.__class__``)."""
    (tmp_path / "Thing").mkdir()
    (tmp_path / "Thing" / "health.lua").write_text(
        'local kinds = {}\n'
        'for k, v in pairs(obj.spec) do kinds[#kinds + 1] = type(k) .. ":" .. type(v) end\n'
        'table.sort(kinds)\n'
        'return {status = "Healthy", message = table.concat(kinds, ",")}\n')
    check = LuaScripts.from_dir(tmp_path).lookup("", "Thing")
    assert check is not None
    obj = {"spec": {"when": __import__("datetime").date(2020, 1, 2), 1: "one",
                    "other": object(), "n": 1.5, "b": False}}
    assert check.evaluate(obj) == (
        "Healthy", "string:boolean,string:number,string:string,string:string,string:string")
