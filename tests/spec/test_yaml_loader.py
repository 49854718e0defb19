"""The one YAML loader, both modes: node mode for the spec, data mode for manifests.

Pure tests: every guard (aliases, anchors in node mode, size caps, nesting) and
the line numbers, through libyaml and the pure-Python fallback alike.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from yaml.nodes import MappingNode

from shared import yamlsafe
from shared.errors import RenderError
from shared.yamlsafe import YAMLRefused, compose_bytes, compose_file, load_documents

BOMB = "\n".join(['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
                 + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]) + "\n"


@pytest.fixture(params=[True, False], ids=["libyaml", "pure"])
def fast(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test through libyaml and again through the pure-Python loaders."""
    if not request.param:
        monkeypatch.setattr(yamlsafe, "NodeLoader", yamlsafe._PyNodeLoader)
    elif yamlsafe.FastLoader is None:
        pytest.skip("PyYAML was built without libyaml")
    return bool(request.param)


# -- data mode ------------------------------------------------------------------

@pytest.mark.parametrize("text, line", [
    ('a0: &a0 ["lol", "lol"]\na1: &a1 [*a0, *a0]\n', 2),
    ("base: &b {x: 1}\nother:\n  y: 2\n  z: *b\n", 4),
    ("base: &b {x: 1}\nd:\n  <<: *b\n", 3),
    ("a: &a [*a]\n", 1),
])
def test_data_mode_refuses_aliases_with_their_line(text: str, line: int, fast: bool) -> None:
    with pytest.raises(RenderError, match=rf"^f\.yaml:{line}: YAML aliases are not allowed$"):
        load_documents(text, "f.yaml", fast=fast)


def test_data_mode_values_are_json_shaped_with_lines(fast: bool) -> None:
    text = "---\n# c\nk: 2024-01-01\nb: !!binary aGVsbG8=\ns: !!set {a, b}\nanchored: &x 1\n---\n---\nx: 1\n"
    assert load_documents(text, "f.yaml", fast=fast) == [
        (3, {"k": "2024-01-01", "b": "aGVsbG8=", "s": {"a": None, "b": None}, "anchored": 1}),
        (9, {"x": 1})]


def test_data_mode_refuses_an_alias_bomb_fast(fast: bool) -> None:
    started = time.monotonic()
    with pytest.raises(RenderError, match="YAML aliases are not allowed"):
        load_documents(BOMB, "bomb.yaml", fast=fast)
    assert time.monotonic() - started < 1.0


def test_data_mode_size_cap() -> None:
    with pytest.raises(RenderError, match=r"^big\.yaml: 101 characters of YAML, more than the 100"):
        load_documents("a: " + "x" * 98, "big.yaml", max_chars=100)


def test_data_mode_nesting_and_syntax_errors_name_the_line(fast: bool) -> None:
    with pytest.raises(RenderError, match=r"^deep\.yaml"):
        load_documents("[" * 50000 + "]" * 50000 + "\n", "deep.yaml", fast=fast)
    with pytest.raises(RenderError, match=r"^x\.yaml:3: "):
        load_documents("a: 1\nb: [\n", "x.yaml", fast=fast)


# -- node mode ------------------------------------------------------------------

def test_node_mode_keeps_lines(fast: bool) -> None:
    root = compose_bytes(b"# top\nsources:\n  - name: a\nclusters: []\n")
    assert isinstance(root, MappingNode)
    assert [(k.value, k.start_mark.line + 1) for k, _ in root.value] == [("sources", 2), ("clusters", 4)]


@pytest.mark.parametrize("text, line", [
    (b"a: &x 1\n", 1),                       # an anchor alone is refused in a spec
    (b"a: 1\nb: *x\n", 2),
    (BOMB.encode(), 1),
])
def test_node_mode_refuses_anchors_and_aliases(text: bytes, line: int, fast: bool) -> None:
    with pytest.raises(YAMLRefused) as err:
        compose_bytes(text)
    assert (err.value.line, err.value.message) == (line, "invalid YAML: anchors and aliases are not allowed")


def test_node_mode_size_cap_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    with path.open("wb") as fh:
        fh.truncate(10 * 1024 * 1024)
    started = time.monotonic()
    with pytest.raises(YAMLRefused, match="larger than 1024 bytes; refusing to parse it"):
        compose_file(str(path), 1024)
    assert time.monotonic() - started < 1.0


def test_node_mode_empty_missing_and_malformed(tmp_path: Path, fast: bool) -> None:
    with pytest.raises(YAMLRefused, match="the file is empty"):
        compose_bytes(b"# nothing\n")
    with pytest.raises(YAMLRefused, match="cannot read: No such file") as err:
        compose_file(str(tmp_path / "nope.yaml"), 1024)
    assert err.value.line == 0
    with pytest.raises(YAMLRefused) as err:
        compose_bytes(b"a: 1\nb: [\n")
    assert err.value.line == 3 and err.value.message.startswith("invalid YAML: ")
    with pytest.raises(YAMLRefused, match="invalid YAML"):
        compose_bytes(b"[" * 100_000 + b"]" * 100_000)
