"""The workers' key: sealed values open only unchanged and under their name; tasks verify only as
signed; keys rotate; bad key files are named."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from workers.sealing import (SIGNATURE, KeyFileError, Sealer, Tampered, default_key_file,
                             parse_keys)


def key(kid: str) -> tuple[str, bytes]:
    return kid, os.urandom(32)


def test_a_sealed_value_opens_only_unchanged_and_under_its_own_name():
    sealer = Sealer([key("k1")])
    blob = sealer.seal(b"password: hunter2", b"fleetsync:render:abc")
    assert b"hunter2" not in blob
    assert sealer.open(blob, b"fleetsync:render:abc") == b"password: hunter2"
    with pytest.raises(Tampered, match="does not authenticate"):
        sealer.open(blob, b"fleetsync:render:other")          # moved under another key
    changed = bytearray(blob)
    changed[-1] ^= 1
    with pytest.raises(Tampered):
        sealer.open(bytes(changed), b"fleetsync:render:abc")
    with pytest.raises(Tampered, match="not a sealed value"):
        sealer.open(b"plain text", b"fleetsync:render:abc")


def test_rotation_seals_with_the_first_key_and_opens_with_any():
    old, new = key("k1"), key("k2")
    blob = Sealer([old]).seal(b"x", b"n")
    rotated = Sealer([new, old])
    assert rotated.open(blob, b"n") == b"x" and rotated.current == "k2"
    with pytest.raises(Tampered, match="key 'k2', which this worker does not have"):
        Sealer([old]).open(rotated.seal(b"x", b"n"), b"n")


def test_a_task_verifies_only_as_it_was_signed():
    sealer = Sealer([key("k1")])
    args, kwargs = ["web", "prod", "abc"], {"run_id": "r1", "revision": "abc"}
    signed = {**kwargs, SIGNATURE: sealer.sign("fleetsync.apply", args, kwargs)}
    assert sealer.verify("fleetsync.apply", args, signed) == ""
    assert "unsigned" in sealer.verify("fleetsync.apply", args, kwargs)
    assert "does not verify" in sealer.verify("fleetsync.apply", ["web", "prod", "old"], signed)
    assert "does not verify" in sealer.verify("fleetsync.render", args, signed)
    assert "does not verify" in sealer.verify("fleetsync.apply", args, {**signed, "revision": "x"})
    assert "does not have" in Sealer([key("k9")]).verify("fleetsync.apply", args, signed)


def test_bad_key_files_are_named_with_the_line():
    good = base64.b64encode(os.urandom(32)).decode()
    assert parse_keys(f"# comment\nk1:{good}\n", "f")[0][0] == "k1"
    with pytest.raises(KeyFileError, match=r"f:2: expected '<id>:<base64 of 32 bytes>'"):
        parse_keys(f"k1:{good}\nk2:short\n", "f")
    with pytest.raises(KeyFileError, match="f: no key in the file"):
        parse_keys("# nothing\n", "f")
    with pytest.raises(KeyFileError, match="example key"):
        parse_keys(f"change-me:{good}\n", "f")
    with pytest.raises(KeyFileError, match="cannot read the render key file"):
        Sealer.from_file("/nonexistent/render.key")


def test_the_default_key_is_made_once_per_host_private(tmp_path: Path):
    first = default_key_file(tmp_path)
    text = first.read_text()
    assert default_key_file(tmp_path).read_text() == text        # made once, then reused
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert Sealer.from_file(first).current == "local"
