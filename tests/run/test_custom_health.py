"""Custom health checks end to end: CEL and Lua from the fleet spec judge real custom resources.

Two real clusters (``dev-1`` wave 1, ``dev-2`` wave 2), real workers and beat. The
application is a CRD of its own group with two kinds and one object of each:

- ``Widget``, judged by the application's CEL check (``healthChecks``): Ready when
  ``status.phase`` is Ready, failed when it is Failed;
- ``Gadget``, judged by the fleet's inline Lua script (``healthLua.scripts``), Argo
  CD's contract: ``status.state`` Ready, Error or anything else.

No operator runs here, so a small controller loop in the test plays one (the only
stand-in): it writes each object's status through the status subresource, first
``Provisioning``, then, a moment later, what the object's ``spec.outcome`` asks for.
A good commit rolls out wave by wave; a commit whose Widget and Gadget fail turns
wave 1 Progressing, then Degraded (each named with the rule that judged it), and the
rollout halts before wave 2; the fix rolls out again.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest

from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

CLUSTERS = {"dev-1": "development", "dev-2": "staging"}
SETTLE = 1.5                 # seconds the stand-in controller stays Provisioning

GADGET_LUA = """\
hs = {}
if obj.status == nil or obj.status.state == nil then
  hs.status = "Progressing"
  hs.message = "no state yet"
  return hs
end
if obj.status.state == "Ready" then
  hs.status = "Healthy"
  hs.message = "gadget ready"
elseif obj.status.state == "Error" then
  hs.status = "Degraded"
  hs.message = obj.status.reason
else
  hs.status = "Progressing"
  hs.message = "gadget " .. obj.status.state
end
return hs
"""


class StandInController:
    """Writes the status of every Widget and Gadget of ``group`` in each cluster, as an
    operator would: Provisioning for a new generation, then the outcome its spec asks."""

    def __init__(self, group: str, kubeconfigs: dict[str, str]) -> None:
        from kubernetes import client, config

        self.group = group
        self.apis = {name: client.CustomObjectsApi(config.new_client_from_config(config_file=k))
                     for name, k in kubeconfigs.items()}
        self.first_seen: dict[tuple[str, str, str, int], float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            for cluster, api in self.apis.items():
                for plural in ("widgets", "gadgets"):
                    try:
                        self._reconcile(cluster, api, plural)
                    except Exception:          # noqa: BLE001 - no CRD yet, a conflict: next round
                        pass

    def _reconcile(self, cluster: str, api: Any, plural: str) -> None:
        for obj in api.list_cluster_custom_object(self.group, "v1", plural)["items"]:
            meta = obj["metadata"]
            key = (cluster, plural, meta["name"], meta["generation"])
            seen = self.first_seen.setdefault(key, time.monotonic())
            settled = time.monotonic() - seen >= SETTLE
            status = self._status(plural, obj["spec"].get("outcome", "ok"), settled)
            status["observedGeneration"] = meta["generation"]
            if obj.get("status") != status:
                api.replace_namespaced_custom_object_status(
                    self.group, "v1", meta["namespace"], plural, meta["name"],
                    {**obj, "status": status})

    @staticmethod
    def _status(plural: str, outcome: str, settled: bool) -> dict[str, Any]:
        if plural == "widgets":
            if not settled:
                return {"phase": "Provisioning"}
            return {"phase": "Ready"} if outcome == "ok" else {
                "phase": "Failed", "message": "quota exceeded: 3 widgets allowed"}
        if not settled:
            return {"state": "Creating"}
        return {"state": "Ready"} if outcome == "ok" else {"state": "Error",
                                                           "reason": "no power"}

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def crd(group: str, kind: str) -> dict[str, Any]:
    plural = kind.lower() + "s"
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                               "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": schema}}]}}


def commit(s: Stack, widget: str, gadget: str = "ok") -> str:
    objects = {"namespace.yaml": {"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": s.namespace}},
               "crd-widget.yaml": crd(s.group, "Widget"), "crd-gadget.yaml": crd(s.group, "Gadget"),
               "widget.yaml": {"apiVersion": f"{s.group}/v1", "kind": "Widget",
                               "metadata": {"name": "w", "namespace": s.namespace},
                               "spec": {"outcome": widget}},
               "gadget.yaml": {"apiVersion": f"{s.group}/v1", "kind": "Gadget",
                               "metadata": {"name": "g", "namespace": s.namespace},
                               "spec": {"outcome": gadget}}}
    for name, obj in objects.items():
        s.repo.write(f"app/{name}", json.dumps(obj))
    sha = s.repo.commit(f"widget {widget}, gadget {gadget}")
    s.repo.push()
    return sha


def write_spec(s: Stack) -> None:
    script = "\n".join("          " + line for line in GADGET_LUA.splitlines())
    lines = ["sources:", "  - name: git", f"    url: {s.repo.bare_url()}", "    branch: main",
             "    interval: 1s", "clusters:"]
    for name, env in CLUSTERS.items():
        lines += [f"  - name: {name}", f"    kubeconfig: {s.kubeconfigs[name]}",
                  f"    labels: {{env: {env}}}", "    interval: 2s"]
    lines += ["healthLua:", "  scripts:", f"    {s.group}/Gadget: |", script,
              "applications:", f"  - name: {s.app}", "    source: git", "    path: app",
              f"    clusters: {{names: [{', '.join(CLUSTERS)}]}}", "    wait: true",
              "    timeout: 60s", "    healthChecks:", f"      - apiVersion: {s.group}/v1",
              "        kind: Widget", "        current: status.phase == 'Ready'",
              "        failed: status.phase == 'Failed'", "    rollout:", "      waves:",
              "        - clusters: {names: [dev-1]}",
              "        - clusters: {matchLabels: {env: staging}}"]
    s.spec.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def stack(dev_fleet, redis_url, tmp_path_factory):
    from tests.conftest import new_redis_db

    s = Stack(tmp_path_factory.mktemp("custom-health"), new_redis_db(redis_url),
              dict(dev_fleet.clusters), app="hc" + uuid.uuid4().hex[:6])
    s.group = f"{s.app}.example.com"               # type: ignore[attr-defined]
    for name in ("config.yaml", "deployment.yaml"):
        if (s.repo.path / "app" / name).exists():
            s.repo.remove(f"app/{name}")
    controller = StandInController(s.group, s.kubeconfigs)   # type: ignore[attr-defined]
    s.revisions = [commit(s, "ok")]                # type: ignore[attr-defined]
    write_spec(s)
    s.start_worker("w1")
    s.start_worker("w2")
    s.start_beat()
    yield s
    s.stop()
    controller.close()


def results(s: Stack, cluster: str, revision: str) -> list[dict]:
    """History entries of ``cluster`` at ``revision``, oldest first."""
    return [e for e in reversed(s.history(cluster)) if e["revision"] == revision]


def test_a_good_commit_waits_for_cel_and_lua_verdicts_wave_by_wave(stack: Stack) -> None:
    one = stack.revisions[0]                       # type: ignore[attr-defined]
    for cluster in CLUSTERS:
        stack.wait(f"{cluster} Ready", lambda c=cluster: stack.ready_at(c, one), timeout=120)
    # when applied, the objects had no status yet: the run ended Progressing on them
    assert "Progressing" in [e["result"] for e in results(stack, "dev-1", one)]
    ready_1 = [e for e in results(stack, "dev-1", one) if e["result"] == "Ready"][0]
    ready_2 = [e for e in results(stack, "dev-2", one) if e["result"] == "Ready"][0]
    assert ready_1["finished_at"] <= ready_2["finished_at"]


def test_a_widget_that_fails_degrades_wave_one_and_halts_the_rollout(stack: Stack) -> None:
    one = stack.revisions[0]                       # type: ignore[attr-defined]
    two = commit(stack, "fail", "fail")
    stack.revisions.append(two)                    # type: ignore[attr-defined]
    stack.wait("dev-1 Degraded at the bad commit", lambda: stack.status("dev-1")["phase"] ==
               "Degraded" and stack.status("dev-1")["revision"] == two, 120)
    # each object named with the rule that judged it: the Widget by the application's CEL
    # check, the Gadget by the fleet's Lua script (its stale Ready may pass the first run:
    # Argo CD's scripts read status as it stands; a Degraded unit's next tick reads both)
    named = (f"Widget/{stack.namespace}/w: Degraded: ", f"[cel: {stack.group}/Widget]",  # type: ignore
             f"Gadget/{stack.namespace}/g: Degraded: no power", f"[lua: {stack.group}/Gadget]")  # type: ignore
    stack.wait("both objects named Degraded with their rules", lambda: all(
        part in stack.status("dev-1")["message"] for part in named), 60)
    phases = [e["result"] for e in results(stack, "dev-1", two)]
    assert "Progressing" in phases and phases[-1] == "Degraded", phases
    stack.wait("dev-2 held at the last good revision", lambda: any(
        e["result"] == "Halted" for e in results(stack, "dev-2", one)), 60)
    assert stack.ready_at("dev-2", one)
    assert not [e for e in results(stack, "dev-2", two) if e["result"] != "Halted"]


def test_the_fix_rolls_out_healthy_everywhere(stack: Stack) -> None:
    three = commit(stack, "ok")
    for cluster in CLUSTERS:
        stack.wait(f"{cluster} Ready at the fix", lambda c=cluster: stack.ready_at(c, three),
                   timeout=120)
