"""Pure decisions of fleetsync server: signatures, push payloads, which units a push changed,
the loopback rule and per-revision roll-ups. No server, no Redis."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from scheduler.server import fleetview, hooks
from scheduler.server.access import host_name, loopback_name
from scheduler.server.config import ServerSettings, check_exposure
from scheduler.server.tokens import Token
from shared.errors import FleetsyncError
from shared.settings import Settings
from shared.spec.model import Application, Cluster, Fleet, Selector, Source, Webhook
from shared.state.status import SourceRecord, UnitStatus

SECRET = "It's a Secret to Everybody"
BODY = b"Hello, World!"


def test_github_signature_matches_githubs_documented_example() -> None:
    # the example in GitHub's "Validating webhook deliveries"
    assert hooks.github_signature(SECRET, BODY) == \
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_verify_each_provider() -> None:
    sig = {"x-hub-signature-256": hooks.github_signature(SECRET, BODY)}
    assert hooks.verify("github", SECRET, sig, BODY) == ""
    assert hooks.verify("generic", SECRET, sig, BODY) == ""
    assert "does not match" in hooks.verify("github", SECRET, sig, BODY + b" ")
    assert "does not match" in hooks.verify("github", "other", sig, BODY)
    assert hooks.verify("github", SECRET, {}, BODY) == "no X-Hub-Signature-256 header"
    assert hooks.verify("github", SECRET, {"x-gitlab-token": SECRET}, BODY) != ""
    assert hooks.verify("gitlab", SECRET, {"x-gitlab-token": SECRET}, BODY) == ""
    assert hooks.verify("gitlab", SECRET, {"x-gitlab-token": SECRET + "x"}, BODY) != ""
    assert hooks.verify("gitlab", SECRET, sig, BODY) == "no X-Gitlab-Token header"
    assert hooks.verify("generic", SECRET, {"x-fleetsync-token": SECRET}, BODY) == ""
    assert hooks.verify("generic", SECRET, {}, BODY) != ""


def test_a_refusal_never_repeats_the_secret_or_the_signature() -> None:
    sig = hooks.github_signature("wrong", BODY)
    why = hooks.verify("github", SECRET, {"x-hub-signature-256": sig}, BODY)
    assert SECRET not in why and sig not in why and "Hello" not in why


def _github_push(ref: str = "refs/heads/main", files: list[str] | None = None) -> bytes:
    commits = [{"id": "1", "added": [], "modified": files or [], "removed": []}]
    return json.dumps({"ref": ref, "after": "a" * 40, "commits": commits}).encode()


def test_parse_push_reads_ref_after_and_every_touched_file() -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": "b" * 40, "commits": [
        {"added": ["apps/web/new.yaml"], "modified": ["README.md"], "removed": []},
        {"added": [], "modified": [], "removed": ["apps/api/old.yaml"]}]}).encode()
    push = hooks.parse_push(body)
    assert push == hooks.Push("refs/heads/main", "b" * 40,
                              frozenset({"apps/web/new.yaml", "README.md", "apps/api/old.yaml"}))


def test_parse_push_leaves_out_what_it_cannot_know() -> None:
    assert hooks.parse_push(b"not json") == hooks.Push()
    assert hooks.parse_push(b"[1, 2]") == hooks.Push()
    assert hooks.parse_push(b"") == hooks.Push()
    # GitLab lists 20 commits at most: with more, the touched files are unknown
    gitlab = {"ref": "refs/heads/main", "checkout_sha": "c" * 40, "total_commits_count": 30,
              "commits": [{"added": [], "modified": ["a"], "removed": []}]}
    push = hooks.parse_push(json.dumps(gitlab).encode())
    assert push.after == "c" * 40 and push.paths is None
    # GitHub drops the file lists of very large pushes
    no_lists = {"ref": "refs/heads/main", "commits": [{"id": "1"}]}
    assert hooks.parse_push(json.dumps(no_lists).encode()).paths is None
    generic = {"ref": "refs/heads/main", "paths": ["apps/web/a.yaml", 3]}
    assert hooks.parse_push(json.dumps(generic).encode()).paths == frozenset({"apps/web/a.yaml"})


def test_events_and_deliveries() -> None:
    assert hooks.event_of("github", {"x-github-event": "push"}) == "push"
    assert hooks.event_of("github", {"x-github-event": "ping"}) == "ping"
    assert hooks.event_of("gitlab", {"x-gitlab-event": "Tag Push Hook"}) == "tag_push"
    assert hooks.event_of("gitlab", {"x-gitlab-event": "Merge Request Hook"}) == \
        "Merge Request Hook"
    assert hooks.event_of("generic", {}) == "push"
    assert hooks.delivery_of({"x-github-delivery": "72d3162e"}) == "72d3162e"
    assert hooks.delivery_of({"x-gitlab-event-uuid": "u-1"}) == "u-1"
    assert hooks.delivery_of({}) == ""


def _source(kind: str = "branch", ref: str = "main") -> Source:
    return Source("platform", "https://git.example.com/p.git", kind, ref, 60.0,
                  webhook=Webhook("HOOK"))


def test_which_refs_move_a_source() -> None:
    assert hooks.concerns(_source(), "refs/heads/main") == ""
    assert "not the source's branch" in hooks.concerns(_source(), "refs/heads/feature")
    assert hooks.concerns(_source("tag", "v1"), "refs/tags/v1") == ""
    assert hooks.concerns(_source("tag", "v1"), "refs/heads/v1") != ""
    assert hooks.concerns(_source("semver", ">=1.0"), "refs/tags/v1.2.0") == ""
    assert "not a tag" in hooks.concerns(_source("semver", ">=1.0"), "refs/heads/main")
    assert "pinned" in hooks.concerns(_source("commit", "a" * 40), "refs/heads/main")
    assert hooks.concerns(_source(), "") == ""          # a generic hook naming no ref
    assert hooks.concerns(_source("default", ""), "refs/heads/anything") == ""
    assert "not a branch" in hooks.concerns(_source("default", ""), "refs/tags/v1")


def _fleet() -> Fleet:
    clusters = {n: Cluster(n, labels={"env": env}) for n, env in
                (("prod", "production"), ("stage", "staging"), ("dev", "dev"))}
    apps = {
        "web": Application("web", "platform", "apps/web", Selector(names=("prod", "stage"))),
        "api": Application("api", "platform", "clusters/${cluster_name}/api",
                           Selector(names=("prod", "stage", "dev"))),
        "ops": Application("ops", "other", "apps/web", Selector(names=("dev",))),
        "old": Application("old", "platform", "apps/old", Selector(names=("dev",)),
                           suspend=True),
    }
    sources = {"platform": _source(), "other": Source("other", "https://o", "branch", "main", 60)}
    return Fleet(sources, clusters, apps)


def test_changed_units_follow_application_paths_with_variables() -> None:
    fleet = _fleet()
    units = hooks.changed_units(fleet, "platform", ["apps/web/deploy.yaml",
                                                    "clusters/stage/api/x.yaml", "apps/old/a"])
    assert units == [("web", "prod"), ("web", "stage"), ("api", "stage")]
    assert hooks.changed_units(fleet, "platform", ["apps/webby/a.yaml", "README.md"]) == []
    assert hooks.sync_requests(fleet, units) == [("web", None), ("api", "stage")]


def test_too_many_changed_units_leave_it_to_the_fleet_wide_reconcile() -> None:
    clusters = {f"c{i}": Cluster(f"c{i}") for i in range(30)}
    app = Application("api", "platform", "clusters/${cluster_name}",
                      Selector(names=tuple(clusters)))
    fleet = Fleet({"platform": _source()}, clusters, {"api": app})
    units = hooks.changed_units(fleet, "platform", [f"clusters/c{i}/a.yaml" for i in range(12)])
    assert len(units) == 12 and hooks.sync_requests(fleet, units) == []


def test_loopback_names() -> None:
    assert host_name("127.0.0.1:8085") == "127.0.0.1" and host_name("[::1]:80") == "::1"
    assert all(loopback_name(h) for h in ("127.0.0.1", "::1", "localhost", "app.localhost"))
    assert not any(loopback_name(h) for h in ("10.0.0.1", "evil.example", ""))


def test_a_public_address_needs_tokens(tmp_path: Path) -> None:
    with pytest.raises(FleetsyncError, match="beyond loopback without authentication"):
        check_exposure(ServerSettings(Settings(), host="0.0.0.0"))
    check_exposure(ServerSettings(Settings(), host="0.0.0.0", tokens=(Token("ops", "t" * 32),)))
    check_exposure(ServerSettings(Settings(), host="::1"))


NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
A, B = "a" * 40, "b" * 40


def _statuses() -> list[UnitStatus]:
    stamp = "2026-01-01T11:59:00.000Z"
    return [UnitStatus("web", "prod", phase="Ready", revision=B, message="ok", last_synced_at=stamp, interval=60),
            UnitStatus("web", "stage", phase="Degraded", revision=B, message="Deployment/web: 1/3", last_synced_at=stamp, interval=60),
            UnitStatus("api", "prod", phase="Failed", revision=B, message="render failed", last_synced_at=stamp, interval=60),
            UnitStatus("api", "stage", phase="Ready", revision=A, message="ok", last_synced_at=stamp, interval=60),
            UnitStatus("gone", "prod", phase="Ready", revision=A, message="ok", last_synced_at="2026-01-01T10:00:00.000Z", interval=60)]


def test_rows_cover_the_spec_and_what_only_redis_knows() -> None:
    rows = fleetview.rows(_fleet(), _statuses(), NOW)
    units = [(r.cluster, r.app, r.shown) for r in rows]
    assert ("dev", "api", "Unknown") in units                  # in the spec, never synced
    assert ("prod", "gone", "Unknown") in units                # stale: 2 h at a 60 s interval
    assert next(r for r in rows if r.app == "web" and r.cluster == "prod").age_s == 60.0
    staging = fleetview.rows(_fleet(), _statuses(), NOW, {"env": "staging"})
    assert {r.cluster for r in staging} == {"stage"}
    assert fleetview.parse_labels("env=production, tier") == {"env": "production", "tier": ""}
    assert {r.cluster for r in fleetview.rows(_fleet(), _statuses(), NOW, {"env": ""})} == \
        {"prod", "stage", "dev"}


def test_the_matrix_puts_the_longer_list_down_the_page() -> None:
    rows = fleetview.rows(_fleet(), _statuses(), NOW)
    m = fleetview.matrix(rows)                  # 5 applications on 3 clusters
    assert m.by == "app" and m.row_names == ["web", "api", "ops", "old", "gone"]
    assert m.column_names == ["prod", "stage", "dev"]
    assert m.cells[("web", "stage")].phase == "Degraded"
    few = fleetview.matrix([r for r in rows if r.app == "web"])
    assert few.by == "cluster" and few.row_names == ["prod", "stage"]
    assert fleetview.matrix(rows, "cluster").cells[("stage", "web")].phase == "Degraded"


def test_rollup_of_a_revision() -> None:
    rows = [r for r in fleetview.rows(_fleet(), _statuses(), NOW) if r.app != "gone"]
    record = SourceRecord("platform", B, commit_revision=B,
                          commit={"author": "Ada", "subject": "web: 3 replicas"})
    current, older = fleetview.rollups(rows, {"platform": record})
    assert current.revision == B and current.current and current.total == 5
    assert current.summary == "bbbbbbb: 2/5 applied, 1 Ready, 1 Degraded, 1 Failed"
    assert current.to_dict()["units"]["Degraded"] == ["stage/web"]
    assert current.to_dict()["not_applied"] == ["prod/api", "stage/api", "dev/api"]
    assert current.commit["author"] == "Ada"
    assert older.revision == A and not older.current and older.summary.startswith("aaaaaaa: 1/5")
    assert fleetview.find_rollup([current, older], "bbbb") == [current]
    assert fleetview.find_rollup([current, older], "bb") == []


def test_last_drift_is_the_newest_entry_that_corrected_some() -> None:
    history = [{"finished_at": "3", "drift": {}}, {"finished_at": "2", "revision": A,
                                                   "drift": {"Deployment/web/web": ["spec.replicas"]}},
               {"finished_at": "1", "drift": {"x": ["y"]}}]
    assert fleetview.last_drift(history)["drift"] == {"Deployment/web/web": ["spec.replicas"]}
    assert fleetview.last_drift([]) is None
