"""Per-object annotations of Argo CD and Flux on a real API server: each changes what the
engine writes, prunes or deletes as docs/apply.md says. A namespace per test."""

from __future__ import annotations

import pytest

from shared.errors import ApplyError
from workers.apply import annotations as ann
from workers.apply.annotations import AnnotationError
from workers.apply.discovery import PROCESS
from workers.apply.engine import apply_unit, judge
from workers.apply.inventory import read as read_inventory
from workers.apply.kube import Kube
from workers.apply.pool import shared
from workers.apply.refs import APP_LABEL, ObjectRef, ref_of
from workers.apply.removal import PRUNE, remove_unit
from workers.apply.snapshot import take
from workers.apply.testing import application, configmap, namespace, unique

pytestmark = pytest.mark.k8s

SYNC, COMPARE, SSA = ann.SYNC_OPTIONS, ann.COMPARE_OPTIONS, ann.FLUX_SSA


@pytest.fixture(scope="module")
def kube(kube_clients) -> Kube:
    return Kube(kube_clients["dev-1"], name="dev-1")


def cm(name: str, ns: str, notes: dict | None = None, **data: str) -> dict:
    obj = configmap(name, ns, **(data or {"v": "git"}))
    if notes:
        obj["metadata"]["annotations"] = notes
    return obj


def cm_path(ns: str, name: str) -> str:
    return f"/api/v1/namespaces/{ns}/configmaps/{name}"


def data(kube: Kube, ns: str, name: str) -> dict | None:
    live = kube.get_or_none(cm_path(ns, name))
    return None if live is None else live.get("data")


def by_hand(kube: Kube, ns: str, name: str, patch: dict, manager: str = "kubectl-edit") -> None:
    kube.request("PATCH", cm_path(ns, name), body=patch, query=[("fieldManager", manager)],
                 content_type="application/merge-patch+json")


def inventory(kube: Kube, app: str) -> set[ObjectRef]:
    return set(read_inventory(kube, app).refs)


def job(ns: str, image: str, notes: dict) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "namespace": ns, "annotations": notes},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "m", "image": image, "command": ["migrate"]}]}}}}


def job_uid(kube: Kube, ns: str) -> str:
    return kube.get(f"/apis/batch/v1/namespaces/{ns}/jobs/migrate")["metadata"]["uid"]


def test_objects_annotated_to_stay_are_left_on_the_cluster_and_named(kube):
    name, ns = unique("keep"), unique("keep")
    app = application(name)
    stays = {"b": {SYNC: "Prune=false"}, "c": {ann.FLUX_PRUNE: "disabled"},
             "d": {SYNC: "Prune=false", COMPARE: "IgnoreExtraneous"}}
    objects = [namespace(ns), cm("a", ns), cm("e", ns), cm("f", ns)] + [
        cm(n, ns, notes) for n, notes in stays.items()]
    apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    by_hand(kube, ns, "f", {"metadata": {"annotations": {ann.FLUX_RECONCILE: "disabled"}}})

    result = apply_unit(kube, app=app, objects=objects[:2], revision="r2", token=2)
    assert result.changeset.summary()["pruned"] == [f"ConfigMap/{ns}/e"]
    assert data(kube, ns, "e") is None
    assert all(data(kube, ns, n) == {"v": "git"} for n in "bcdf")
    assert sorted(result.notes) == [
        f"ConfigMap/{ns}/b: no longer in Git, left on the cluster ({SYNC}: Prune=false)",
        f"ConfigMap/{ns}/c: no longer in Git, left on the cluster ({ann.FLUX_PRUNE}: disabled)",
        f"ConfigMap/{ns}/f: no longer in Git, left on the cluster "
        f"({ann.FLUX_RECONCILE}: disabled)"]                 # d: IgnoreExtraneous, not named
    assert result.to_dict()["notes"] == list(result.notes)
    assert {r.name for r in inventory(kube, name)} >= {"b", "c", "d", "f"}
    again = apply_unit(kube, app=app, objects=objects[:2], revision="r2", token=3)
    assert again.writes == 0 and data(kube, ns, "b") == {"v": "git"}


def test_ignored_objects_are_never_written_and_never_taken_over(kube):
    name, ns = unique("ignore"), unique("ignore")
    app = application(name)
    objects = [namespace(ns), cm("x", ns, {SSA: "Ignore"}), cm("y", ns, {ann.FLUX_IGNORE: "true"}),
               cm("z", ns)]
    first = apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    assert data(kube, ns, "x") is None and data(kube, ns, "y") is None
    assert first.counts["skipped"] == 2 and {r.name for r in inventory(kube, name)} == {ns, "z"}

    kube.create(f"/api/v1/namespaces/{ns}/configmaps", cm("x", ns, v="hand"))   # not ours
    by_hand(kube, ns, "z", {"metadata": {"annotations": {ann.FLUX_RECONCILE: "disabled"}},
                            "data": {"v": "hand"}})
    paused = apply_unit(kube, app=app, objects=objects, revision="r2", token=2)
    assert data(kube, ns, "x") == {"v": "hand"} and data(kube, ns, "z") == {"v": "hand"}
    assert {c.reason for c in paused.changeset.by_action("skipped")} == {
        f"{SSA}: Ignore: not applied", f'{ann.FLUX_IGNORE}: "true": skipped',
        f"{ann.FLUX_RECONCILE}: disabled: neither applied nor pruned"}
    assert ObjectRef("v1", "ConfigMap", ns, "z") in inventory(kube, name)      # still ours

    objects[3] = cm("z", ns, {ann.FLUX_RECONCILE: "enabled"})     # Git resumes it
    resumed = apply_unit(kube, app=app, objects=objects, revision="r3", token=3)
    assert resumed.counts["configured"] == 1 and data(kube, ns, "z") == {"v": "git"}


def test_if_not_present_is_created_once_and_never_updated(kube):
    name, ns = unique("once"), unique("once")
    app = application(name)
    objects = [cm("p", ns), cm("s", ns, {SSA: "IfNotPresent"}, v="1"),
               cm("t", ns, {SSA: "IfNotPresent"}, v="1")]
    kube.create("/api/v1/namespaces", namespace(ns))
    kube.create(f"/api/v1/namespaces/{ns}/configmaps", cm("t", ns, v="hand"))  # not ours
    apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    assert data(kube, ns, "s") == {"v": "1"} and data(kube, ns, "t") == {"v": "hand"}

    by_hand(kube, ns, "s", {"data": {"v": "cert-manager"}})
    objects[1] = cm("s", ns, {SSA: "IfNotPresent"}, v="2")
    result = apply_unit(kube, app=app, objects=objects, revision="r2", token=2)
    assert data(kube, ns, "s") == {"v": "cert-manager"} and result.counts["configured"] == 0
    assert {r.name for r in inventory(kube, name)} == {"p", "s"}   # t was never fleetsync's
    gone = apply_unit(kube, app=app, objects=objects[:1], revision="r3", token=3)
    assert gone.counts["pruned"] == 1 and data(kube, ns, "s") is None
    assert data(kube, ns, "t") == {"v": "hand"}


@pytest.mark.parametrize("notes", [{ann.FLUX_FORCE: "enabled"}, {SYNC: "Force=true"},
                                   {SYNC: "Replace=true,Force=true"}],
                         ids=["flux-force", "argo-force", "argo-replace-force"])
def test_force_annotations_recreate_a_job_whose_template_changed(kube, notes):
    name, ns = unique("force"), unique("force")
    app = application(name)                                      # force: false
    apply_unit(kube, app=app, objects=[namespace(ns), job(ns, "m:1", notes)], revision="r1",
               token=1)
    uid = job_uid(kube, ns)
    result = apply_unit(kube, app=app, objects=[namespace(ns), job(ns, "m:2", notes)],
                        revision="r2", token=2)
    assert result.counts["replaced"] == 1 and job_uid(kube, ns) != uid
    plain = [namespace(ns), job(ns, "m:3", {})]
    with pytest.raises(ApplyError, match="spec.template is immutable"):
        apply_unit(kube, app=app, objects=plain, revision="r3", token=3)


def test_replace_writes_the_whole_object_where_apply_merges(kube):
    name, ns = unique("replace"), unique("replace")
    app = application(name)
    objects = [namespace(ns), cm("whole", ns, {SYNC: "Replace=true"}, a="1"),
               cm("merged", ns, {SSA: "Merge"}, a="1"),
               cm("apply", ns, {SYNC: "ServerSideApply=true"}, a="1")]
    apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    for each in ("whole", "merged", "apply"):
        by_hand(kube, ns, each, {"data": {"b": "by-hand"}})
    objects[1:] = [cm("whole", ns, {SYNC: "Replace=true"}, a="2"),
                   cm("merged", ns, {SSA: "Merge"}, a="2"),
                   cm("apply", ns, {SYNC: "ServerSideApply=true"}, a="2")]
    result = apply_unit(kube, app=app, objects=objects, revision="r2", token=2)
    assert result.counts["configured"] == 3
    assert data(kube, ns, "whole") == {"a": "2"}                   # replaced whole
    assert data(kube, ns, "merged") == data(kube, ns, "apply") == {"a": "2", "b": "by-hand"}
    ops = {m["manager"]: m["operation"]
           for m in kube.get(cm_path(ns, "whole"))["metadata"]["managedFields"]}
    assert ops.get("fleetsync") == "Update"


def test_validate_false_lets_a_replaced_object_drop_unknown_fields(kube):
    name, ns = unique("validate"), unique("validate")
    app = application(name)
    strict = {**cm("u", ns, {SYNC: "Replace=true"}), "unknownField": 1}
    with pytest.raises(ApplyError, match='unknown field "unknownField"'):
        apply_unit(kube, app=app, objects=[namespace(ns), strict], revision="r1", token=1)
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}") is None          # nothing written

    relaxed = {**cm("u", ns, {SYNC: "Replace=true,Validate=false"}), "unknownField": 1}
    apply_unit(kube, app=app, objects=[namespace(ns), relaxed], revision="r1", token=2)
    live = kube.get(cm_path(ns, "u"))
    assert live["data"] == {"v": "git"} and "unknownField" not in live
    applied = {**cm("w", ns, {SYNC: "Validate=false"}), "unknownField": 1}
    with pytest.raises(ApplyError, match="field not declared in schema"):   # as the server
        apply_unit(kube, app=app, objects=[namespace(ns), applied], revision="r2", token=3)


def test_create_namespace_on_an_object_creates_its_namespace(kube):
    name, ns = unique("cns"), unique("cns")
    app = application(name)
    result = apply_unit(kube, app=app, objects=[cm("c", ns, {SYNC: "CreateNamespace=true"})],
                        revision="r1", token=1)
    live = kube.get(f"/api/v1/namespaces/{ns}")
    assert live["metadata"]["labels"][APP_LABEL] == name and data(kube, ns, "c") == {"v": "git"}
    assert ObjectRef("v1", "Namespace", "", ns) in inventory(kube, name)
    assert result.counts["created"] == 2


@pytest.mark.parametrize("notes", [{SYNC: "Delete=false"}, {ann.FLUX_PRUNE: "disabled"},
                                   {ann.FLUX_RECONCILE: "disabled"}],
                         ids=["argo-delete-false", "flux-prune-disabled", "flux-reconcile"])
def test_objects_annotated_to_stay_survive_the_removal_of_the_application(kube, notes):
    name, ns = unique("removal"), unique("removal")
    app = application(name, on_removal="prune")
    in_git = ann.FLUX_RECONCILE not in notes      # reconcile: paused in the cluster
    objects = [namespace(ns), cm("kept", ns, notes if in_git else None), cm("other", ns)]
    apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    if not in_git:
        by_hand(kube, ns, "kept", {"metadata": {"annotations": notes}})
    removed = remove_unit(kube, name, PRUNE)
    assert data(kube, ns, "other") is None and data(kube, ns, "kept") == {"v": "git"}
    assert APP_LABEL not in (kube.get(cm_path(ns, "kept"))["metadata"].get("labels") or {})
    (key, value), = notes.items()
    assert f"ConfigMap/{ns}/kept: {key}: {value}" in removed.kept
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}") is not None     # it holds "kept"
    assert removed.pruned == [f"ConfigMap/{ns}/other"]


def test_a_namespace_that_holds_an_object_kept_by_its_annotation_is_not_pruned(kube):
    name, ns = unique("holder"), unique("holder")
    app = application(name, allow_empty=True)
    apply_unit(kube, app=app, objects=[namespace(ns), cm("kept", ns, {SYNC: "Prune=false"})],
               revision="r1", token=1)
    result = apply_unit(kube, app=app, objects=[], revision="r2", token=2)
    assert result.counts["pruned"] == 0 and data(kube, ns, "kept") == {"v": "git"}
    (held,) = [c for c in result.changeset.entries if c.ref.kind == "Namespace"]
    assert held.reason == f"still holds objects of others: ConfigMap/kept ({SYNC}: Prune=false)"


def test_ignore_extraneous_is_no_drift_under_detect(kube):
    name, ns = unique("extra"), unique("extra")
    app = application(name, drift="detect")
    objects = [namespace(ns), cm("a", ns), cm("gen", ns, {COMPARE: "IgnoreExtraneous"})]
    apply_unit(kube, app=app, objects=objects, revision="r1", token=1, correct_drift=False)
    quiet = apply_unit(kube, app=app, objects=objects[:2], revision="r1", token=2,
                       correct_drift=False)
    assert not quiet.detected and quiet.writes == 0 and data(kube, ns, "gen") == {"v": "git"}
    synced = apply_unit(kube, app=app, objects=objects[:2], revision="r1", token=3,
                        correct_drift=True)                       # `fleetsync sync`
    assert synced.counts["pruned"] == 1 and data(kube, ns, "gen") is None


def test_malformed_annotations_fail_naming_object_and_annotation_and_write_nothing(kube):
    name, ns = unique("bad"), unique("bad")
    objects = [namespace(ns), cm("bad", ns, {SYNC: "Prune=no"})]
    with pytest.raises(AnnotationError) as caught:
        apply_unit(kube, app=application(name), objects=objects, revision="r1", token=1)
    assert f"ConfigMap/{ns}/bad: annotation {SYNC}: Prune='no'" in str(caught.value)
    assert kube.get_or_none(f"/api/v1/namespaces/{ns}") is None


def test_unknown_options_are_warnings_in_the_result(kube):
    name, ns = unique("warn"), unique("warn")
    objects = [namespace(ns), cm("w", ns, {SYNC: "PruneLast=true"})]
    result = apply_unit(kube, app=application(name), objects=objects, revision="r1", token=1)
    assert result.counts["created"] == 2 and result.notes == (
        f"ConfigMap/{ns}/w: {SYNC}: PruneLast=true is not supported by fleetsync; ignored",)
    assert ref_of(objects[1]) in inventory(kube, name)


def test_a_unit_with_objects_left_alone_needs_no_run_from_the_cluster_pass(kube):
    name, ns, other = unique("quiet"), unique("quiet"), unique("quiet")
    app = application(name)
    objects = [namespace(ns), cm("a", ns), cm("x", ns, {SSA: "Ignore"}),
               cm("y", ns, {ann.FLUX_IGNORE: "true"}),
               cm("c", other, {SYNC: "CreateNamespace=true"})]
    apply_unit(kube, app=app, objects=objects, revision="r1", token=1)
    found = PROCESS.lookup(kube, [ref_of(o) for o in objects if o["metadata"]["name"] != ns])
    resources = {(r.api_version, r.kind): r for r in found.values()}
    resources[("v1", "Namespace")] = PROCESS.catalog(kube)[("v1", "Namespace")]
    snapshot = take(kube, resources.values(), shared(), [name])
    verdict = judge(kube, app=app, objects=objects, revision="r1", snapshot=snapshot)
    assert verdict.why == "" and verdict.counts["skipped"] == 2
