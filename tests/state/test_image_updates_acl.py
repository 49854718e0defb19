"""Under the generated Redis ACL, the workers write what image automation did to each source
(and the markers per revision), and ``images status``, the server and Flower read all of it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis as redis_lib

from scheduler.images_view import view
from shared.spec.load import load
from shared.state import imageupdates
from shared.state.status import StatusStore, UnitStatus
from tests.support import acl_redis

SPEC = """images:
  - {name: podinfo, repository: registry.example.com/apps/podinfo, policy: {semver: "^1"}}
sources:
  - name: git
    url: https://git.example.com/org/gitops.git
    branch: main
    imageUpdates: {author: {name: bot, email: bot@example.com}}
clusters:
  - {name: east, kubeconfig: /nonexistent}
applications:
  - {name: web, source: git, path: apps/web, clusters: {names: [east]}}
"""
REV = "d" * 40


def test_workers_write_the_pass_and_markers_and_readers_see_the_view(tmp_path: Path) -> None:
    (tmp_path / "fleet.yaml").write_text(SPEC)
    fleet = load(str(tmp_path / "fleet.yaml"))
    server = acl_redis.start(tmp_path, ["east"], [])
    try:
        worker = server.client("fleetsync-worker")
        imageupdates.record_pass(worker, "git", {"source": "git", "at": 1.0, "commit": REV,
                                                 "revision": REV, "changes": [], "problems": [], "left_out": []})
        imageupdates.record_markers(worker, "git", REV, [
            {"file": "a.yaml", "line": 3, "policy": "podinfo", "part": "tag", "value": "1.1.0"}])
        StatusStore(worker).set_status(UnitStatus("web", "east", phase="Ready", revision=REV))
        for user in ("fleetsync-cli", "fleetsync-server", "fleetsync-flower"):
            reader = redis_lib.Redis.from_url(server.url(user), decode_responses=True)
            found = view(reader, fleet)
            assert found["sources"][0]["commit"] == REV, user
            assert found["policies"][0]["clusters"][0]["tag"] == "1.1.0", user
            assert found["policies"][0]["git"][0]["value"] == "1.1.0", user
        with pytest.raises(redis_lib.exceptions.NoPermissionError):
            imageupdates.record_pass(server.client("fleetsync-cli"), "git", {})
    finally:
        server.stop()
