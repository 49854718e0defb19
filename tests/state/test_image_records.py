"""An image policy's last scan in a real Redis: the swap returns the record it replaced,
an error keeps the last choice, hostile text is cleaned, and the ACL roles reach the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib

from scheduler import redis_acl
from shared.state import images, keys
from tests.support import acl_redis
from workers.images.scan import ScanResult

DIGEST = "sha256:" + "a" * 64


def _result(tag: str, at: float, why: str = "") -> ScanResult:
    return ScanResult(policy="podinfo", repository="registry.example.com/apps/podinfo", tag=tag,
                      digest=DIGEST, why=why or f"{tag} by semver ^1", at=at, considered=5,
                      ignored=1)


def test_record_returns_the_previous_record_and_load_reads_it(
        isolated_redis_url: str) -> None:
    for decoded in (False, True):
        r = redis_lib.Redis.from_url(isolated_redis_url, decode_responses=decoded)
        r.flushdb()
        assert images.record(r, _result("1.0.0", 100.0)) is None
        previous = images.record(r, _result("1.1.0", 200.0))
        assert previous is not None and previous["tag"] == "1.0.0" and previous["at"] == 100.0
        assert images.load(r, "podinfo") == {
            "policy": "podinfo", "repository": "registry.example.com/apps/podinfo",
            "tag": "1.1.0", "digest": DIGEST, "why": "1.1.0 by semver ^1", "at": 200.0,
            "considered": 5, "ignored": 1, "error": ""}
        assert images.load(r, "other") is None
        assert set(images.load_all(r, ["podinfo", "other", "podinfo"])) == {"podinfo"}
        assert images.load_all(r, []) == {}
        r.close()


def test_an_error_keeps_the_last_choice_and_a_new_scan_clears_it(isolated_redis_url: str) -> None:
    r = redis_lib.Redis.from_url(isolated_redis_url, decode_responses=True)
    images.record_error(r, "fresh", "image policy fresh: cannot reach the registry", 50.0)
    fresh = images.load(r, "fresh")
    assert fresh is not None and fresh["tag"] == "" and fresh["error"].startswith("image policy")
    images.record(r, _result("1.0.0", 100.0))
    images.record_error(r, "podinfo", "line one\nline two\x1b[31m", 300.0)
    failed = images.load(r, "podinfo")
    assert failed is not None
    assert (failed["tag"], failed["digest"], failed["at"]) == ("1.0.0", DIGEST, 300.0)
    assert failed["error"] == "line one line two [31m"
    previous = images.record(r, _result("1.1.0", 400.0))
    assert previous is not None and previous["error"] == "line one line two [31m"
    assert images.load(r, "podinfo")["error"] == ""  # type: ignore[index]


def test_hostile_text_is_cut_and_a_garbled_record_reads_as_none(isolated_redis_url: str) -> None:
    r = redis_lib.Redis.from_url(isolated_redis_url, decode_responses=True)
    images.record(r, _result("1.0.0", 1.0, why="x\u202e" + "y" * 5000))
    loaded = images.load(r, "podinfo")
    assert loaded is not None and len(loaded["why"]) == images.MAX_TEXT
    assert "\u202e" not in loaded["why"]
    r.set(keys.image("podinfo"), "{not json")
    assert images.load(r, "podinfo") is None
    r.set(keys.image("podinfo"), '{"tag": "1.0.0", "considered": "many"}')
    assert images.load(r, "podinfo") is None
    r.set(keys.image("podinfo"), "[1, 2]")
    assert images.load(r, "podinfo") is None


def test_the_readers_roles_may_read_the_records_and_workers_write_them() -> None:
    key = keys.image("podinfo")
    for role in (redis_acl.cli_reader(), redis_acl.server(), redis_acl.flower()):
        assert f"%R~{keys.PREFIX}:image*" in role.keys, role
    assert "~*" in redis_acl.central_worker().keys
    assert key.startswith(f"{keys.PREFIX}:image")


def test_under_the_real_acl_workers_write_and_readers_only_read(tmp_path: Path) -> None:
    server = acl_redis.start(tmp_path, ["east"], ["east"])
    try:
        worker, cli = server.client("fleetsync-worker"), server.client("fleetsync-cli")
        assert images.record(worker, _result("1.0.0", 1.0)) is None
        images.record_error(worker, "podinfo", "registry down", 2.0)
        for reader in (cli, server.client("fleetsync-server"), server.client("fleetsync-flower")):
            assert images.load(reader, "podinfo")["error"] == "registry down"  # type: ignore[index]
            assert set(images.load_all(reader, ["podinfo"])) == {"podinfo"}
        for refused in (cli, server.client("fleetsync-server"), server.client("fleetsync-pull-east")):
            with pytest.raises(redis_lib.exceptions.NoPermissionError):
                images.record(refused, _result("9.9.9", 3.0))
        assert images.load(worker, "podinfo")["tag"] == "1.0.0"  # type: ignore[index]
    finally:
        server.stop()
