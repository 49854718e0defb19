"""Per-object annotations of Argo CD and Flux: the pure reading, as a table, and the plan's
decisions it leads to (held objects, leftovers kept on the cluster). No cluster."""

from __future__ import annotations

import pytest

from workers.apply import annotations as ann
from workers.apply.annotations import AS_USUAL, AnnotationError, Behaviour, read
from workers.apply.plan import plan
from workers.apply.refs import APP_LABEL, ref_of
from workers.apply.testing import configmap

SYNC, COMPARE = ann.SYNC_OPTIONS, ann.COMPARE_OPTIONS
PRUNE, SSA, FORCE = ann.FLUX_PRUNE, ann.FLUX_SSA, ann.FLUX_FORCE
RECONCILE, IGNORE = ann.FLUX_RECONCILE, ann.FLUX_IGNORE


def annotated(notes: dict | None = None, labels: dict | None = None, name: str = "c") -> dict:
    obj = configmap(name, "ns")
    if notes is not None:
        obj["metadata"]["annotations"] = notes
    if labels is not None:
        obj["metadata"]["labels"] = labels
    return obj


READINGS = [
    # annotations                                     what they ask for
    ({}, AS_USUAL),
    ({"other.example.com/x": "y"}, AS_USUAL),
    ({SYNC: "Prune=false"}, Behaviour(keep=f"{SYNC}: Prune=false")),
    ({SYNC: "Prune=true"}, Behaviour()),
    ({SYNC: "Delete=false"}, Behaviour(delete=f"{SYNC}: Delete=false")),
    ({SYNC: "Replace=true"}, Behaviour(replace=True)),
    ({SYNC: "Replace=true,Force=true"}, Behaviour(replace=True, force=True)),
    ({SYNC: " Replace=true , Force=true ,"}, Behaviour(replace=True, force=True)),
    ({SYNC: "ServerSideApply=true"}, Behaviour()),
    ({SYNC: "Replace=true,Validate=false"}, Behaviour(replace=True, validate=False)),
    ({SYNC: "CreateNamespace=true"}, Behaviour(create_namespace=True)),
    ({SYNC: "Prune=false,Delete=false"},
     Behaviour(keep=f"{SYNC}: Prune=false", delete=f"{SYNC}: Delete=false")),
    ({COMPARE: "IgnoreExtraneous"}, Behaviour(extraneous=True)),
    ({PRUNE: "disabled"}, Behaviour(keep=f"{PRUNE}: disabled", delete=f"{PRUNE}: disabled")),
    ({PRUNE: "Disabled"}, Behaviour(keep=f"{PRUNE}: disabled", delete=f"{PRUNE}: disabled")),
    ({PRUNE: "enabled"}, Behaviour()),
    ({SSA: "Override"}, Behaviour()),
    ({SSA: "Merge"}, Behaviour()),
    ({SSA: "IfNotPresent"}, Behaviour(if_not_present=True)),
    ({SSA: "Ignore"}, Behaviour(hold=f"{SSA}: Ignore: not applied")),
    ({FORCE: "enabled"}, Behaviour(force=True)),
    ({FORCE: "Disabled"}, Behaviour()),
    ({RECONCILE: "disabled"}, Behaviour(
        hold=f"{RECONCILE}: disabled: neither applied nor pruned",
        keep=f"{RECONCILE}: disabled", delete=f"{RECONCILE}: disabled")),
    ({RECONCILE: "enabled"}, Behaviour()),
    ({IGNORE: "true"}, Behaviour(hold=f'{IGNORE}: "true": skipped')),
    ({IGNORE: "false"}, Behaviour()),
    ({IGNORE: "sync_only"}, Behaviour(hold=f'{IGNORE}: "sync_only": skipped')),
]


@pytest.mark.parametrize(("notes", "wanted"), READINGS, ids=[str(n) for n, _ in READINGS])
def test_annotations_read_as_behaviour(notes, wanted):
    assert read(annotated(notes)) == wanted


def test_reconcile_disabled_as_a_label_counts_too():
    assert read(annotated(labels={RECONCILE: "disabled"})).hold.startswith(RECONCILE)


WARNINGS = [
    ({SYNC: "PruneLast=true"}, f"ConfigMap/ns/c: {SYNC}: PruneLast=true is not supported by "
                               "fleetsync; ignored"),
    ({SYNC: "ServerSideApply=false"}, "fleetsync always uses server-side apply"),
    ({SYNC: "Prune=confirm"}, "no confirmation step; kept as Prune=false"),
    ({SYNC: "Force=true"}, "re-created only when an immutable field changed"),
    ({SYNC: "Validate=false"}, "Validate=false without Replace=true: a server-side apply "
                               "refuses fields the schema does not declare"),
    ({COMPARE: "ServerSideDiff=true"}, f"ConfigMap/ns/c: {COMPARE}: ServerSideDiff=true is not "
                                       "supported by fleetsync; ignored"),
]


@pytest.mark.parametrize(("notes", "warning"), WARNINGS, ids=[str(n) for n, _ in WARNINGS])
def test_options_fleetsync_cannot_honour_are_warnings_naming_the_object(notes, warning):
    found = read(annotated(notes)).warnings
    assert len(found) == 1 and warning in found[0], found


def test_prune_confirm_keeps_the_object_as_prune_false():
    assert read(annotated({SYNC: "Prune=confirm"})).keep == f"{SYNC}: Prune=confirm"


MALFORMED = [
    ({SYNC: "Prune"}, f"ConfigMap/ns/c: annotation {SYNC}: 'Prune' is not Option=value"),
    ({SYNC: "Prune=no"}, f"ConfigMap/ns/c: annotation {SYNC}: Prune='no'; Prune takes true or "
                         "false or confirm"),
    ({SYNC: "=true"}, "is not Option=value"),
    ({SYNC: 3}, f"ConfigMap/ns/c: annotation {SYNC} must be a string, not int"),
    ({PRUNE: "off"}, f"ConfigMap/ns/c: annotation {PRUNE}: 'off'; it takes enabled or disabled"),
    ({SSA: "Replace"}, f"annotation {SSA}: 'Replace'; it takes override or merge or "
                       "ifnotpresent or ignore"),
    ({IGNORE: "yes"}, f"annotation {IGNORE}: 'yes'; it takes true or false or sync_only"),
]


@pytest.mark.parametrize(("notes", "message"), MALFORMED, ids=[str(n) for n, _ in MALFORMED])
def test_a_malformed_annotation_is_an_error_naming_object_and_annotation(notes, message):
    with pytest.raises(AnnotationError) as caught:
        read(annotated(notes))
    assert message in caught.value.message and caught.value.obj == "ConfigMap/ns/c"


def live(obj: dict, app: str = "app") -> dict:
    out = {**obj, "metadata": {**obj["metadata"], "uid": "u1"}}
    out["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), APP_LABEL: app}
    return out


def test_what_is_held_back_and_why():
    ignored, paused, once = (annotated({SSA: "Ignore"}, name="a"),
                             annotated(name="b"), annotated({SSA: "IfNotPresent"}, name="c"))
    new_once = annotated({SSA: "IfNotPresent"}, name="d")
    resumed = annotated({RECONCILE: "enabled"}, name="e")
    desired = {ref_of(o): o for o in (ignored, paused, once, new_once, resumed)}
    live_state = {ref_of(paused): live(annotated({RECONCILE: "disabled"}, name="b")),
                  ref_of(once): live(once), ref_of(new_once): None,
                  ref_of(resumed): live(annotated({RECONCILE: "disabled"}, name="e"))}
    held = ann.held(desired, live_state)
    assert held == {ref_of(ignored): f"{SSA}: Ignore: not applied",
                    ref_of(paused): f"{RECONCILE}: disabled: neither applied nor pruned",
                    ref_of(once): f"{SSA}: IfNotPresent: exists, not updated"}


def test_settle_keeps_annotated_leftovers_and_held_objects_in_the_inventory():
    keep, quiet, gone = (annotated({SYNC: "Prune=false"}, name="keep"),
                         annotated({SYNC: "Prune=false", COMPARE: "IgnoreExtraneous"}, name="q"),
                         annotated({COMPARE: "IgnoreExtraneous"}, name="gone"))
    once, fresh = annotated({SSA: "IfNotPresent"}, name="once"), annotated({SSA: "Ignore"}, name="f")
    live_state = {ref_of(o): live(o) for o in (keep, quiet, gone, once)}
    inventory = [ref_of(o) for o in (keep, quiet, gone, once)]
    held = {ref_of(once): "IfNotPresent", ref_of(fresh): "Ignore"}
    changeset = ann.settle(plan([], live_state, inventory, app="app", prune=True, adopt=False),
                           held, live_state, inventory)
    by_ref = {c.ref: c for c in changeset.entries}
    assert by_ref[ref_of(keep)].action == "skipped"
    assert by_ref[ref_of(keep)].reason == f"left on the cluster ({SYNC}: Prune=false)"
    assert by_ref[ref_of(gone)].action == "pruned"
    assert by_ref[ref_of(once)].reason == "IfNotPresent" and by_ref[ref_of(fresh)].action == "skipped"
    assert set(changeset.kept) == {ref_of(keep), ref_of(quiet), ref_of(once)}   # fresh: not ours
    assert ann.reported(changeset) == [
        f"ConfigMap/ns/keep: no longer in Git, left on the cluster ({SYNC}: Prune=false)"]
    spared = ann.spared(changeset)                      # drift: detect: IgnoreExtraneous
    assert spared.to_prune() == [] and ref_of(gone) in spared.kept  # is no drift: kept
    assert ann.reported(spared) == ann.reported(changeset)


def test_warnings_never_raise_on_what_the_plan_refused():
    assert ann.warnings([annotated({SYNC: "Prune"}), annotated({SYNC: "Foo=1"})]) == [
        f"ConfigMap/ns/c: {SYNC}: Foo=1 is not supported by fleetsync; ignored"]


def test_a_long_hostile_value_is_cut_in_messages():
    with pytest.raises(AnnotationError) as caught:
        read(annotated({SYNC: "Prune=" + "x" * 5000}))
    assert len(caught.value.message) < 200
