"""Argo CD's hooks and sync waves as data: annotations read, hooks split and named, the
order of phases, waves, kinds and names. Pure: no cluster, no mock."""

from __future__ import annotations

import random

import pytest

from shared import argocd
from shared.errors import ApplyError, HealthError
from workers.apply import hooks, waves
from workers.apply.execute import Outcome
from workers.apply.refs import ObjectRef, ref_of
from workers.apply.testing import configmap, crd, deployment, namespace, service


def argo(obj: dict, hook: str = "", wave: str = "", policy: str = "") -> dict:
    notes = {argocd.HOOK: hook, argocd.SYNC_WAVE: wave, argocd.DELETE_POLICY: policy}
    obj["metadata"]["annotations"] = {k: v for k, v in notes.items() if v}
    return obj


def job(name: str, ns: str = "web", generate: bool = False) -> dict:
    meta = {"generateName": name, "namespace": ns} if generate else {"name": name,
                                                                      "namespace": ns}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {}}


@pytest.mark.parametrize("value, types", [
    ("PreSync", {"PreSync"}), ("PreSync,PostSync", {"PreSync", "PostSync"}),
    (" Sync , SyncFail ", {"Sync", "SyncFail"}), ("Skip", {"Skip"}),
])
def test_hook_types_are_comma_lists(value: str, types: set[str]) -> None:
    assert argocd.hook_types({argocd.HOOK: value}) == types
    assert argocd.hook_types({}) is None


@pytest.mark.parametrize("value, wave", [("0", 0), ("-1", -1), ("+3", 3), (" 12 ", 12),
                                         ("007", 7)])
def test_sync_waves_are_integers(value: str, wave: int) -> None:
    assert argocd.sync_wave({argocd.SYNC_WAVE: value}) == wave
    assert argocd.sync_wave({}) == 0


@pytest.mark.parametrize("value", ["one", "1.5", "", "1_0", "- 1", "9999999999", "0x1"])
def test_a_bad_sync_wave_is_refused(value: str) -> None:
    with pytest.raises(argocd.Invalid, match="argocd.argoproj.io/sync-wave: .* is not an integer"):
        argocd.sync_wave({argocd.SYNC_WAVE: value})


def test_delete_policies_in_helm_spelling_before_hook_creation_by_default() -> None:
    assert argocd.delete_policies({}) == {"before-hook-creation"}
    assert argocd.delete_policies({argocd.DELETE_POLICY: "HookSucceeded,HookFailed"}) == {
        "hook-succeeded", "hook-failed"}
    with pytest.raises(argocd.Invalid, match="'hook-succeeded' is not a delete policy"):
        argocd.delete_policies({argocd.DELETE_POLICY: "hook-succeeded"})


def test_split_takes_argo_cd_hooks_out_of_the_main_set_and_drops_skip() -> None:
    pre = argo(job("migrate"), hook="PreSync", wave="-1", policy="HookSucceeded")
    both = argo(job("both"), hook="Skip,PostSync")
    skipped = argo(configmap("debug", "web"), hook="Skip")
    helm_too = argo(job("mixed"), hook="Sync")
    helm_too["metadata"]["annotations"]["helm.sh/hook"] = "pre-install"   # Argo CD's wins
    main = configmap("settings", "web")
    found, rest = hooks.split([pre, both, skipped, helm_too, main])
    assert rest == [main]
    assert [(h.ref.name, set(h.events), h.weight, set(h.policies)) for h in found] == [
        ("migrate", {"PreSync"}, -1, {"hook-succeeded"}),
        ("both", {"PostSync"}, 0, {"before-hook-creation"}),
        ("mixed", {"Sync"}, 0, {"before-hook-creation"})]


def test_split_refuses_a_bad_annotation_naming_the_object() -> None:
    with pytest.raises(ApplyError, match=r"Job/web/migrate-: argocd.argoproj.io/sync-wave: "
                                         r"'soon' is not an integer"):
        hooks.split([argo(job("migrate-", generate=True), hook="PreSync", wave="soon")])


def test_a_generate_name_hook_is_named_per_revision_and_phase() -> None:
    (hook,), _ = hooks.split([argo(job("migrate-", generate=True), hook="PreSync,PostSync")])
    sha = "3f2a1bc9d0e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4"
    assert hooks.named(hook, sha, "PreSync").ref.name == "migrate-3f2a1bc-presync"
    assert hooks.named(hook, sha, "PostSync").ref.name == "migrate-3f2a1bc-postsync"
    assert hooks.named(hook, sha, "PreSync") == hooks.named(hook, sha, "PreSync")  # a retry
    other = hooks.named(hook, "v1.2.3", "PreSync").ref.name      # not a commit: a digest
    assert other.startswith("migrate-") and other.endswith("-presync") and "." not in other
    assert "name" not in hook.obj["metadata"]                     # the render stays as it was
    (fixed,), _ = hooks.split([argo(job("migrate"), hook="PreSync")])
    assert hooks.named(fixed, sha, "PreSync") is fixed


def sa(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": "web"}}


# (phase, wave, kind, name) in the order Argo CD runs them: phase, wave, kind order, name
ORDER_TABLE = [
    ("PreSync", -5, "Job", "schema"),
    ("PreSync", 0, "ServiceAccount", "migrator"),
    ("PreSync", 0, "Job", "migrate"),
    ("PreSync", 0, "Job", "seed"),
    ("Sync", -1, "ConfigMap", "early"),
    ("Sync", 0, "Job", "in-sync"),
    ("PostSync", 0, "ConfigMap", "marker"),
    ("PostSync", 0, "Job", "notify"),
    ("PostSync", 2, "Job", "smoke"),
    ("SyncFail", 0, "Job", "page"),
]


def test_hooks_run_by_phase_then_wave_then_kind_order_then_name() -> None:
    builders = {"Job": job, "ServiceAccount": sa, "ConfigMap": lambda n: configmap(n, "web")}
    objects = [argo(builders[kind](name), hook=phase, wave=str(wave))
               for phase, wave, kind, name in ORDER_TABLE]
    random.Random(7).shuffle(objects)
    found, rest = hooks.split(objects)
    assert rest == []
    ran = [(phase, h.weight, h.ref.kind, h.ref.name)
           for phase in argocd.PHASES for h in hooks.due(found, phase)]
    assert ran == ORDER_TABLE


def test_waves_of_the_main_set_with_namespaces_and_crds_moved_ahead_of_their_users() -> None:
    desired = {ref_of(o): o for o in [
        argo(namespace("web"), wave="3"),                 # its objects come earlier: it moves
        argo(namespace("late"), wave="4"),                # nothing earlier lives in it: stays
        argo(configmap("settings", "web"), wave="-2"),
        argo(deployment("web", "web"), wave="1"),
        service("web", "web"),                            # no annotation: wave 0
        argo(crd("example.com", "Widget", "widgets"), wave="5"),
        argo({"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "w", "namespace": "late"}}, wave="4"),
    ]}
    plan = waves.order(desired, [(ObjectRef("batch/v1", "Job", "web", "hook"), -3)])
    assert plan is not None
    assert {f"{r.kind}/{r.name}": w for r, w in plan.wave.items()} == {
        "Namespace/web": -3, "Namespace/late": 4, "ConfigMap/settings": -2,
        "Deployment/web": 1, "Service/web": 0, "CustomResourceDefinition/widgets.example.com": 4,
        "Widget/w": 4}
    assert plan.waves == (-3, -2, 0, 1, 4)


def test_no_wave_annotation_and_no_sync_hook_is_no_plan_at_all() -> None:
    desired = {ref_of(o): o for o in [namespace("web"), configmap("c", "web")]}
    assert waves.order(desired) is None
    assert waves.order(desired, [(ObjectRef("batch/v1", "Job", "web", "h"), 0)]) is not None


def test_a_bad_wave_in_the_main_set_names_the_object() -> None:
    desired = {ref_of(o): o for o in [argo(configmap("c", "web"), wave="first")]}
    with pytest.raises(ApplyError, match=r"ConfigMap/web/c: argocd.argoproj.io/sync-wave"):
        waves.order(desired)


def test_the_executor_applies_wave_by_wave_and_stops_where_a_wave_fails() -> None:
    objs = [argo(configmap(n, "web"), wave=w) for n, w in [("a", "0"), ("b", "1"), ("c", "2"),
                                                           ("d", "0")]]
    desired = {ref_of(o): o for o in objs}
    plan = waves.order(desired)
    steps: list[str] = []

    def apply_part(part: dict) -> Outcome:
        steps.append("apply " + ",".join(sorted(r.name for r in part)))
        return Outcome(done={r: {} for r in part})

    def between(wave: int, done: Outcome) -> None:
        steps.append(f"between {wave}")
        if wave == 1:
            raise HealthError("wave 1 not healthy")

    out = waves.apply(desired, plan, apply_part, between)
    assert steps == ["apply a,d", "between 0", "apply b", "between 1"]
    assert out.stopped and str(out.error("apply")) == "wave 1 not healthy"
    assert sorted(r.name for r in out.done) == ["a", "b", "d"]       # recorded before raising
    assert waves.later(plan, 1, desired, []) and not waves.later(plan, 2, desired, [])
