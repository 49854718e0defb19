"""``${var}`` substitution: pure, no files."""

from __future__ import annotations

import pytest

from shared.errors import RenderError
from workers.render.variables import referenced, substitute

VARS = {"cluster_name": "production", "replicas": "3", "empty": ""}


def test_plain_reference() -> None:
    assert substitute("name: ${cluster_name}-web", VARS) == "name: production-web"


def test_several_references_on_several_lines() -> None:
    text = "a: ${cluster_name}\nb: ${replicas}\nc: ${cluster_name}${replicas}\n"
    assert substitute(text, VARS) == "a: production\nb: 3\nc: production3\n"


def test_text_without_references_is_returned_as_is() -> None:
    text = "a: $HOME and $ alone and {braces}"
    assert substitute(text, VARS) is text


def test_default_used_when_undefined() -> None:
    assert substitute("x: ${tier:=gold}", VARS) == "x: gold"


def test_default_ignored_when_defined() -> None:
    assert substitute("x: ${replicas:=1}", VARS) == "x: 3"


def test_empty_default_and_empty_value() -> None:
    assert substitute("x: '${nothing:=}'", VARS) == "x: ''"
    assert substitute("x: '${empty:=fallback}'", VARS) == "x: ''"


def test_escape_produces_literal() -> None:
    assert substitute("cmd: echo $${HOME}", VARS) == "cmd: echo ${HOME}"


def test_escape_of_a_defined_name_is_not_substituted() -> None:
    assert substitute("$${cluster_name} ${cluster_name}", VARS) == "${cluster_name} production"


def test_escape_of_a_default_form() -> None:
    assert substitute("$${x:=y}", VARS) == "${x:=y}"


def test_non_variable_forms_are_left_alone() -> None:
    text = "a: ${1} b: ${a-b} c: ${HOME:-x} d: ${ spaced }"
    assert substitute(text, VARS) == text


def test_undefined_names_variable_file_and_line() -> None:
    with pytest.raises(RenderError) as err:
        substitute("a: 1\nb: 2\nc: ${missing}\n", VARS, where="apps/web/cm.yaml")
    message = str(err.value)
    assert "apps/web/cm.yaml:3" in message
    assert "${missing}" in message


def test_undefined_without_where_names_the_line() -> None:
    with pytest.raises(RenderError, match=r"line 1: undefined variable \$\{nope\}"):
        substitute("${nope}", VARS)


def test_values_are_not_rescanned() -> None:
    assert substitute("${a}", {"a": "${b}"}) == "${b}"


def test_referenced_names() -> None:
    text = "${cluster_name} ${tier:=gold} $${escaped} ${1}"
    assert referenced(text) == {"cluster_name", "tier"}
    assert referenced("no refs") == set()
