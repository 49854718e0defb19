"""Flux-compatible CEL health checks: fluxcd/pkg runtime/cel semantics, pure."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.errors import SpecError
from shared.health_cel import CelError, compile_check

# The cert-manager example of RFC-0009 and the Flux docs.
CERT = dict(
    in_progress="status.conditions.filter(e, e.type == 'Issuing').all(e, "
                "e.observedGeneration == metadata.generation && e.status == 'True')",
    failed="status.conditions.filter(e, e.type == 'Ready').all(e, "
           "e.observedGeneration == metadata.generation && e.status == 'False')",
    current="status.conditions.filter(e, e.type == 'Ready').all(e, "
            "e.observedGeneration == metadata.generation && e.status == 'True')",
)


def certificate(issuing: str, ready: str, *, generation: int = 3) -> dict[str, Any]:
    return {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "app", "namespace": "default", "generation": generation,
                     "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]},
        "spec": {"secretName": "app-tls", "dnsNames": ["app.example.com"]},
        "status": {"conditions": [
            {"type": "Issuing", "status": issuing, "observedGeneration": generation,
             "reason": "x", "message": "Issuing certificate"},
            {"type": "Ready", "status": ready, "observedGeneration": generation,
             "reason": "y", "message": "Certificate is up to date"},
        ]},
    }


@pytest.fixture(scope="module")
def cert_check():  # type: ignore[no-untyped-def]
    return compile_check("cert-manager.io/v1", "Certificate", **CERT)


def test_certificate_ready_is_healthy_and_carries_ready_message(cert_check) -> None:
    word, message = cert_check.evaluate(certificate("False", "True"))
    assert word == "Healthy"
    assert message.startswith("current expression is true")
    assert "Certificate is up to date" in message


def test_certificate_failed_is_degraded(cert_check) -> None:
    word, message = cert_check.evaluate(certificate("False", "False"))
    assert (word, message.split(";")[0]) == ("Degraded", "failed expression is true")


def test_in_progress_is_evaluated_first_as_in_flux(cert_check) -> None:
    # Issuing True and an old Ready True: Flux (RFC-0009 order) says in progress.
    word, message = cert_check.evaluate(certificate("True", "True"))
    assert word == "Progressing" and message.startswith("inProgress expression is true")


def test_none_true_is_progressing(cert_check) -> None:
    word, message = cert_check.evaluate(certificate("False", "Unknown"))
    assert word == "Progressing" and message.startswith("no expression is true")


def test_generation_check_runs_before_expressions() -> None:
    check = compile_check("x.io/v1", "Thing", current="true")
    obj = {"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"generation": 2},
           "status": {"observedGeneration": 1}}
    assert check.evaluate(obj)[0] == "Progressing"
    obj["status"]["observedGeneration"] = 2
    assert check.evaluate(obj)[0] == "Healthy"


def test_failed_beats_current_when_both_true() -> None:
    check = compile_check("x.io/v1", "T", current="data.current", failed="data.failed",
                          in_progress="data.inProgress")
    both = {"data": {"current": True, "failed": True, "inProgress": False}}
    assert check.evaluate(both)[0] == "Degraded"
    every = {"data": {"current": True, "failed": True, "inProgress": True}}
    assert check.evaluate(every)[0] == "Progressing"


def test_missing_field_is_unknown_not_false(cert_check) -> None:
    obj = certificate("False", "True")
    obj["status"] = {}
    word, message = cert_check.evaluate(obj)
    assert word == "Unknown"
    assert message == "cel: Certificate: inProgress: no such key: conditions"
    del obj["status"]
    word, message = cert_check.evaluate(obj)
    assert word == "Unknown" and message.startswith("cel: Certificate: inProgress: ")


def test_empty_conditions_follow_cel_all_semantics() -> None:
    # Flux's own test: all() over an empty list is true, so `failed` decides.
    check = compile_check("x.io/v1", "T",
                          failed="status.conditions.filter(e, e.type == 'Ready')"
                                 ".all(e, e.status == 'False')",
                          current="status.conditions.filter(e, e.type == 'Ready')"
                                  ".all(e, e.status == 'True')")
    assert check.evaluate({"status": {"conditions": []}})[0] == "Degraded"


def test_has_macro_guards_missing_fields() -> None:
    check = compile_check("x.io/v1", "T",
                          current="has(status.phase) && status.phase == 'Running'")
    assert check.evaluate({"status": {}})[0] == "Progressing"
    assert check.evaluate({"status": {"phase": "Running"}})[0] == "Healthy"


def test_non_bool_result_is_unknown_naming_the_field() -> None:
    check = compile_check("x.io/v1", "T", current="status.phase")
    word, message = check.evaluate({"status": {"phase": "Running"}})
    assert word == "Unknown"
    assert message.startswith("cel: T: current: result 'Running' is str, not bool")


def test_evaluation_error_never_raises() -> None:
    check = compile_check("x.io/v1", "T", current="1 / status.zero == 1")
    word, message = check.evaluate({"status": {"zero": 0}})
    assert word == "Unknown" and message.startswith("cel: T: current: ")


@pytest.mark.parametrize("field", ["current", "in_progress", "failed"])
def test_compile_error_names_the_field(field: str) -> None:
    exprs = {"current": "true", field: "status.conditions.filter(e,"}
    with pytest.raises(CelError) as info:
        compile_check("x.io/v1", "T", **exprs)
    flux_name = {"in_progress": "inProgress"}.get(field, field)
    assert info.value.field == flux_name
    assert isinstance(info.value, SpecError)
    assert info.value.problems[0].startswith(f"{flux_name}: does not compile")


def test_current_is_required() -> None:
    with pytest.raises(CelError) as info:
        compile_check("x.io/v1", "T", current="", failed="true")
    assert info.value.field == "current"


def test_matches_group_and_kind_not_version(cert_check) -> None:
    obj = certificate("False", "True")
    assert cert_check.matches(obj)
    assert cert_check.matches({**obj, "apiVersion": "cert-manager.io/v1beta1"})
    assert not cert_check.matches({**obj, "apiVersion": "other.io/v1"})
    assert not cert_check.matches({**obj, "kind": "Issuer"})
    core = compile_check("v1", "ConfigMap", current="true")
    assert core.matches({"apiVersion": "v1", "kind": "ConfigMap"})


def test_sealed_secret_and_cluster_examples() -> None:
    sealed = compile_check("bitnami.com/v1alpha1", "SealedSecret",
                           failed="status.conditions.filter(e, e.type == 'Synced')"
                                  ".all(e, e.status == 'False')",
                           current="status.conditions.filter(e, e.type == 'Synced')"
                                   ".all(e, e.status == 'True')")
    synced = {"status": {"conditions": [{"type": "Synced", "status": "True"}]}}
    assert sealed.evaluate(synced)[0] == "Healthy"


def test_whole_values_stay_whole_when_the_expression_needs_them() -> None:
    # size(), map iteration and indexing need the whole value, not a pruned one.
    check = compile_check("x.io/v1", "T", current="size(metadata.labels) == 2 && "
                          "status.conditions[0].type == 'Ready' && "
                          "metadata.annotations.exists(k, k == 'a')")
    obj = {"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"a": "x"}},
           "status": {"conditions": [{"type": "Ready"}]}}
    assert check.evaluate(obj)[0] == "Healthy"


def test_string_extensions_flux_enables() -> None:
    check = compile_check("x.io/v1", "T", current="status.phase.lowerAscii() == 'running'")
    assert check.evaluate({"status": {"phase": "Running"}})[0] == "Healthy"


def test_comment_in_an_expression_stays_inside_it() -> None:
    check = compile_check("x.io/v1", "T", current="status.ok // trailing comment",
                          failed="status.bad")
    assert check.evaluate({"status": {"ok": True, "bad": False}})[0] == "Healthy"


def test_evaluate_does_not_change_the_object(cert_check) -> None:
    obj = certificate("False", "True")
    before = copy.deepcopy(obj)
    cert_check.evaluate(obj)
    assert obj == before


@pytest.mark.parametrize("expr", [
    "status.conditions.filter(c, c.type == 'Ready')[0] == {'type': 'Ready', 'status': 'True'}",
    "status.conditions.exists(c, c == {'type': 'Ready', 'status': 'True'})",
    "status.conditions.exists(c, c.type == 'Ready') && "
    "status.conditions[0] == {'type': 'Ready', 'status': 'True'}",
    "status.conditions.exists(c, size(c) == 2 && c.type == 'Ready')",
])
def test_elements_used_whole_are_not_pruned(expr: str) -> None:
    # Each would turn true if the elements were cut down to the fields named.
    check = compile_check("x.io/v1", "T", current=expr)
    obj = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "r"}]}}
    assert check.evaluate(obj)[0] == "Progressing"


def test_elements_read_by_field_give_the_same_verdicts_pruned() -> None:
    check = compile_check("x.io/v1", "T", current="has(status.conditions) && "
                          "status.conditions.filter(c, c.type == 'Ready')"
                          ".all(c, c.status == 'True' && !has(c.reason))")
    with_reason = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "r"}]}}
    without = {"status": {"conditions": [{"type": "Ready", "status": "True", "message": "m"}]}}
    assert check.evaluate(with_reason)[0] == "Progressing"
    assert check.evaluate(without)[0] == "Healthy"
