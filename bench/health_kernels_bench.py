"""What a custom health verdict costs: CEL (two libraries) and Lua, per object.

Builds 10,000 Certificate-like objects (two conditions, labels, annotations and
a managedFields entry, as the API server returns them), then times:

- the raw libraries on Flux's cert-manager expressions: ``common-expression-language``
  (Rust core) and ``cel-python`` (pure Python; on a 500-object sample, it is slow),
  compile time and evaluate time of the three expressions per object;
- the kernels as the verdict calls them: ``shared.health_cel.CelCheck.evaluate``
  and ``shared.health_lua.LuaCheck.evaluate`` over all 10,000 objects.

    .venv/bin/python bench/health_kernels_bench.py [--objects 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.health_cel import compile_check  # noqa: E402
from shared.health_lua import LuaScripts  # noqa: E402

EXPRS = {
    "inProgress": "status.conditions.filter(e, e.type == 'Issuing').all(e, "
                  "e.observedGeneration == metadata.generation && e.status == 'True')",
    "failed": "status.conditions.filter(e, e.type == 'Ready').all(e, "
              "e.observedGeneration == metadata.generation && e.status == 'False')",
    "current": "status.conditions.filter(e, e.type == 'Ready').all(e, "
               "e.observedGeneration == metadata.generation && e.status == 'True')",
}
LUA = """\
local hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for i, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" and condition.status == "False" then
      hs.status = "Degraded"; hs.message = condition.message; return hs
    end
    if condition.type == "Ready" and condition.status == "True" then
      hs.status = "Healthy"; hs.message = condition.message; return hs
    end
  end
end
hs.status = "Progressing"; hs.message = "Waiting for certificate"
return hs
"""


def certificate(i: int) -> dict[str, Any]:
    ready = ("True", "False", "Unknown")[i % 3]
    return {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": f"cert-{i}", "namespace": "apps", "generation": 2,
                     "uid": f"00000000-0000-0000-0000-{i:012d}", "resourceVersion": str(i),
                     "labels": {"app.kubernetes.io/name": "web", "fleetsync.io/unit": "apps"},
                     "annotations": {"cert-manager.io/issuer-kind": "ClusterIssuer"},
                     "managedFields": [{"manager": "fleetsync", "operation": "Apply",
                                        "apiVersion": "cert-manager.io/v1",
                                        "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:spec": {"f:secretName": {},
                                                                "f:dnsNames": {}}}}]},
        "spec": {"secretName": f"cert-{i}-tls", "dnsNames": [f"web-{i}.example.com"],
                 "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer",
                               "name": "letsencrypt"}},
        "status": {"conditions": [
            {"type": "Issuing", "status": "False", "observedGeneration": 2,
             "reason": "Issued", "message": "", "lastTransitionTime": "2025-01-01T00:00:00Z"},
            {"type": "Ready", "status": ready, "observedGeneration": 2, "reason": "Ready",
             "message": "Certificate is up to date and has not expired",
             "lastTransitionTime": "2025-01-01T00:00:00Z"}],
            "notAfter": "2026-01-01T00:00:00Z", "revision": 1},
    }


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Seconds per call."""
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - started) / repeat


def raw_rust(objects: list[dict[str, Any]]) -> tuple[float, float]:
    import cel
    compile_s = timed(lambda: [cel.compile(e) for e in EXPRS.values()], 200)
    programs = [cel.compile(e) for e in EXPRS.values()]

    def verdicts() -> None:
        for obj in objects:
            for program in programs:
                if program.execute(obj):
                    break
    return compile_s, timed(verdicts, 1) / len(objects)


def raw_python(objects: list[dict[str, Any]]) -> tuple[float, float]:
    import celpy
    env = celpy.Environment()
    compile_s = timed(lambda: [env.program(env.compile(e)) for e in EXPRS.values()], 5)
    programs = [env.program(env.compile(e)) for e in EXPRS.values()]

    def verdicts() -> None:
        for obj in objects:
            activation = {k: celpy.json_to_cel(v) for k, v in obj.items()}
            for program in programs:
                if program.evaluate(activation):
                    break
    return compile_s, timed(verdicts, 1) / len(objects)


def kernel(evaluate: Callable[[dict[str, Any]], Any], objects: list[dict[str, Any]]) -> float:
    evaluate(objects[0])
    return timed(lambda: [evaluate(o) for o in objects], 1) / len(objects)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=10_000)
    args = parser.parse_args()
    objects = [certificate(i) for i in range(args.objects)]
    print(f"{'what':58} {'compile':>10} {'per verdict':>12} {'verdicts/s':>11}")
    for name, (c, e) in (("cel raw: common-expression-language (Rust)", raw_rust(objects)),
                         ("cel raw: cel-python (pure Python), 500 objects",
                          raw_python(objects[:500]))):
        print(f"{name:58} {c * 1e6:8.0f}us {e * 1e6:10.1f}us {1 / e:11.0f}")
    started = time.perf_counter()
    check = compile_check("cert-manager.io/v1", "Certificate", current=EXPRS["current"],
                          in_progress=EXPRS["inProgress"], failed=EXPRS["failed"])
    compiled = time.perf_counter() - started
    e = kernel(check.evaluate, objects)
    print(f"{'kernel: shared.health_cel CelCheck.evaluate':58} {compiled * 1e6:8.0f}us "
          f"{e * 1e6:10.1f}us {1 / e:11.0f}")
    started = time.perf_counter()
    lua = LuaScripts.from_dir(None, inline={"cert-manager.io/Certificate": LUA})
    compiled = time.perf_counter() - started
    found = lua.lookup("cert-manager.io", "Certificate")
    assert found is not None
    e = kernel(found.evaluate, objects)
    print(f"{'kernel: shared.health_lua LuaCheck.evaluate':58} {compiled * 1e6:8.0f}us "
          f"{e * 1e6:10.1f}us {1 / e:11.0f}")


if __name__ == "__main__":
    main()
