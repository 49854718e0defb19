"""What health verdicts cost: built-in, CEL and Lua per object, and a tick's re-evaluation.

- verdicts per second of ``workers.apply.health.check`` over 10,000 objects: the
  built-in rules (a mix of Deployments, Pods, Services, PVCs, ConfigMaps and
  custom resources read generically), a CEL check (Flux's cert-manager
  expressions, from a ``HealthSettings`` as the spec gives it) and a Lua script
  (Argo CD's style) through ``workers.apply.checks``: the whole path a worker
  takes, custom checks, precedence and the verdict type included;
- a tick's health re-evaluation (``health.unhealthy`` over the live objects of
  each unit, what the cluster pass's ``judge`` does) at 1,000 units of 3 objects,
  now and with the check of an earlier revision (``--before REV``, default the
  revision before the health rework), loaded from Git into a scratch module.

    .venv/bin/python bench/health_bench.py [--objects 10000] [--units 1000] [--before REV]

Goal: a CEL or Lua verdict <= 50 us per object once compiled.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.spec.model import HealthCheck, HealthSettings  # noqa: E402
from workers.apply.checks import build  # noqa: E402
from workers.apply.health import check, unhealthy  # noqa: E402
from workers.apply.refs import ref_of  # noqa: E402
from workers.apply.testing import configmap, deployment  # noqa: E402

BEFORE = "2fbd69a"          # the last revision with the old health.check
CERT_CHECK = HealthCheck(
    "cert-manager.io/v1", "Certificate",
    current="status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')",
    failed="status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')",
    in_progress="status.conditions.exists(e, e.type == 'Issuing' && e.status == 'True')")
ROLLOUT_LUA = """\
local hs = {}
if obj.status == nil then
  hs.status = "Progressing"; hs.message = "waiting for the controller"; return hs
end
if obj.spec.paused == true then
  hs.status = "Suspended"; hs.message = "paused"; return hs
end
if obj.status.conditions ~= nil then
  for i, c in ipairs(obj.status.conditions) do
    if c.type == "InvalidSpec" then
      hs.status = "Degraded"; hs.message = c.message; return hs
    end
  end
end
if obj.status.phase == "Healthy" then
  hs.status = "Healthy"; hs.message = "rolled out"; return hs
end
hs.status = "Progressing"; hs.message = obj.status.message or "rolling out"
return hs
"""


def meta(name: str, namespace: str = "bench") -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "generation": 2, "uid": "u-" + name,
            "resourceVersion": "12345", "labels": {"app": "web", "team": "t"},
            "annotations": {"fleetsync.io/unit": "web"}}


def builtin_objects(n: int) -> list[dict[str, Any]]:
    kinds: list[Callable[[int], dict[str, Any]]] = [
        lambda i: {**deployment(f"d{i}", "bench", 3), "metadata": meta(f"d{i}"),
                   "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                              "readyReplicas": 3, "availableReplicas": 3, "conditions": [
                                  {"type": "Available", "status": "True"},
                                  {"type": "Progressing", "status": "True",
                                   "reason": "NewReplicaSetAvailable"}]}},
        lambda i: {"apiVersion": "v1", "kind": "Pod", "metadata": meta(f"p{i}"),
                   "spec": {"restartPolicy": "Always"},
                   "status": {"phase": "Running", "conditions": [
                       {"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0,
                                              "state": {"running": {}}}]}},
        lambda i: {"apiVersion": "v1", "kind": "Service", "metadata": meta(f"s{i}"),
                   "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1"}, "status": {}},
        lambda i: {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": meta(f"c{i}"), "status": {"phase": "Bound"}},
        lambda i: {**configmap(f"m{i}", "bench"), "metadata": meta(f"m{i}")},
        lambda i: {"apiVersion": "example.com/v1", "kind": "Database", "metadata": meta(f"x{i}"),
                   "status": {"observedGeneration": 2, "phase": "Running", "conditions": [
                       {"type": "Ready", "status": "True", "reason": "Available"}]}},
    ]
    return [kinds[i % len(kinds)](i) for i in range(n)]


def certificates(n: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": meta(f"t{i}"),
             "spec": {"secretName": f"t{i}", "dnsNames": ["web.example.com"]},
             "status": {"conditions": [
                 {"type": "Ready", "status": "True" if i % 4 else "False",
                  "reason": "Ready", "message": "Certificate is up to date and has not expired",
                  "observedGeneration": 2},
                 {"type": "Issuing", "status": "False", "observedGeneration": 2}],
                 "notAfter": "2027-01-01T00:00:00Z"}} for i in range(n)]


def rollouts(n: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": meta(f"r{i}"),
             "spec": {"replicas": 3, "paused": False},
             "status": {"phase": "Healthy" if i % 3 else "Progressing",
                        "conditions": [{"type": "Available", "status": "True"}]}}
            for i in range(n)]


def per_object(objects: list[dict[str, Any]], judge: Callable[[Mapping], Any]) -> float:
    for obj in objects[:200]:            # warm: compile caches, LuaJIT tables
        judge(obj)
    started = time.perf_counter()
    for obj in objects:
        judge(obj)
    return (time.perf_counter() - started) / len(objects) * 1e6


def old_check(revision: str) -> Callable[[Mapping], Any] | None:
    """``check`` of ``workers/apply/health.py`` at ``revision`` (its imports resolve today)."""
    try:
        text = subprocess.run(["git", "show", f"{revision}:workers/apply/health.py"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout
    except (subprocess.CalledProcessError, OSError):
        return None
    path = Path(tempfile.mkdtemp()) / "health_before.py"
    path.write_text(text.replace("from shared.errors import HealthError",
                                 "from shared.errors import HealthError  # noqa"))
    spec = importlib.util.spec_from_file_location("health_before", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError:
        return None
    return module.check          # type: ignore[no-any-return]


def tick(units: int, judge: Callable[[Mapping[Any, Mapping]], Any]) -> float:
    """Seconds for one tick's health re-evaluation of ``units`` units of 3 objects."""
    objects = builtin_objects(units * 3)
    groups = [{ref_of(o): o for o in objects[i * 3:i * 3 + 3]} for i in range(units)]
    started = time.perf_counter()
    for group in groups:
        judge(group)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--units", type=int, default=1_000)
    parser.add_argument("--before", default=BEFORE)
    args = parser.parse_args()
    cel_rules = build(HealthSettings(checks=(CERT_CHECK,)))
    lua_rules = build(HealthSettings(lua_scripts=(("argoproj.io/Rollout", ROLLOUT_LUA),)))
    figures = {
        "builtin_us": per_object(builtin_objects(args.objects), check),
        "cel_us": per_object(certificates(args.objects), lambda o: check(o, cel_rules)),
        "lua_us": per_object(rollouts(args.objects), lambda o: check(o, lua_rules)),
        "tick_s": tick(args.units, unhealthy),
    }
    before = old_check(args.before)
    if before is not None:
        figures["builtin_before_us"] = per_object(builtin_objects(args.objects), before)
        figures["tick_before_s"] = tick(args.units, lambda group: {
            ref: v for ref, obj in group.items() if (v := before(obj))[0] != "Healthy"})
    for name, value in figures.items():
        unit = "s" if name.endswith("_s") else "us/object"
        rate = f"  ({1e6 / value:,.0f} verdicts/s)" if name.endswith("_us") else ""
        print(f"{name:<20} {value:10.4f} {unit}{rate}")
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
