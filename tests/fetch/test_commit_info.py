"""History names who committed each revision: author, date and subject, read once.

A real Git repository, the real Redis and the worker's own ``Context``: the
fetch reads the commit from the mirror and records it beside the source's
revision; a worker without the mirror (a pull worker) reads it from there; the
apply stage's read of the source record brings it along, so a sync costs no
Redis round trip of its own for it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from shared.settings import Settings
from shared.state import keys
from shared.state.status import HistoryEntry
from tests.support.gitutil import GitRepo, git
from workers.run import stages
from workers.context import Context


def _spec(tmp_path: Path, url: str, ref: str = "branch: main") -> Path:
    spec = tmp_path / "fleet.yaml"
    spec.write_text("\n".join([
        "sources:", "  - name: git", f"    url: {url}", f"    {ref}",
        "clusters:", "  - name: dev-1", "    kubeconfig: /nonexistent",
        "applications:", "  - name: web", "    source: git", "    path: app",
        "    clusters: {names: [dev-1]}"]) + "\n")
    return spec


@pytest.fixture()
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.write("app/cm.yaml", "kind: ConfigMap\n")
    repo.commit("web: first config\n\nA body line that is not the subject.")
    return repo


def _context(tmp_path: Path, redis_url: str, spec: Path, cache: str) -> Context:
    settings = Settings(redis_url=redis_url, fleet_path=str(spec), cache_dir=tmp_path / cache,
                        allow_local_sources=True)
    return Context.connect(settings)


@pytest.fixture(autouse=True)
def fresh_process_memory() -> None:
    stages._COMMITS.clear()         # each test starts as a new worker process would


def test_the_fetch_records_the_commit_beside_the_revision(repo, tmp_path, isolated_redis_url):
    ctx = _context(tmp_path, isolated_redis_url, _spec(tmp_path, repo.bare_url()), "render")
    revision = stages.fetch(ctx, "git")
    record = ctx.status.source_record("git")
    assert record.revision == revision == repo.head() and record.commit_revision == revision
    assert record.commit["author"] == "Test Author"
    assert record.commit["author_email"] == "author@example.com"
    assert record.commit["subject"] == "web: first config"
    assert record.commit["committed_at"].endswith("+00:00")
    assert ctx.status.source_state("git") == (revision, "")      # callers of the pair: unchanged
    fields = stages.commit_fields(ctx, "web", revision)
    assert fields == record.commit
    entry = HistoryEntry(revision=revision, trigger="beat", result="Ready", message="ok", started_at="t0", finished_at="t1", **fields)
    assert entry.author == "Test Author" and entry.subject == "web: first config"


def test_the_record_names_the_default_branch_followed(repo, tmp_path, isolated_redis_url):
    spec = _spec(tmp_path, repo.bare_url(), "defaultBranch: true")
    ctx = _context(tmp_path, isolated_redis_url, spec, "render")
    assert stages.fetch(ctx, "git") == repo.head()
    assert ctx.status.source_record("git").ref == "main (default branch)"
    repo.branch("next")
    newer = repo.commit("on next")
    repo.push()
    git("symbolic-ref", "HEAD", "refs/heads/next", cwd=repo.bare_path)
    assert stages.fetch(ctx, "git") == newer
    assert ctx.status.source_record("git").ref == "next (default branch)"


def test_a_named_branch_records_no_ref(repo, tmp_path, isolated_redis_url):
    ctx = _context(tmp_path, isolated_redis_url, _spec(tmp_path, repo.bare_url()), "render")
    stages.fetch(ctx, "git")
    assert ctx.status.source_record("git").ref == ""


def test_a_worker_without_the_mirror_reads_it_from_the_source_record(repo, tmp_path,
                                                                      isolated_redis_url):
    spec = _spec(tmp_path, repo.bare_url())
    revision = stages.fetch(_context(tmp_path, isolated_redis_url, spec, "render"), "git")
    stages._COMMITS.clear()
    pull = _context(tmp_path, isolated_redis_url, spec, "pull")      # no mirror on this host
    assert not pull.sources.mirror_path(pull.fleet().sources["git"]).exists()
    assert stages.commit_fields(pull, "web", revision)["subject"] == "web: first config"


def test_the_apply_stages_read_brings_the_commit_without_a_round_trip(repo, tmp_path,
                                                                        isolated_redis_url):
    spec = _spec(tmp_path, repo.bare_url())
    revision = stages.fetch(_context(tmp_path, isolated_redis_url, spec, "render"), "git")
    stages._COMMITS.clear()
    pull = _context(tmp_path, isolated_redis_url, spec, "pull")
    assert stages.recorded_source(pull, "git") == (revision, "")
    counter = redis.Redis.from_url(isolated_redis_url)
    before = int(counter.info("stats")["total_commands_processed"])
    assert stages.commit_fields(pull, "web", revision)["author"] == "Test Author"
    after = int(counter.info("stats")["total_commands_processed"])
    assert after - before == 1          # the second INFO only


def test_an_artifact_digest_is_described_from_this_hosts_record_after_the_source_moved_on(
        tmp_path, isolated_redis_url):
    spec = tmp_path / "fleet.yaml"
    spec.write_text(_spec(tmp_path, "unused").read_text().replace(
        "    url: unused\n    branch: main",
        '    oci: {url: "oci://registry.example:5000/fleet/config", semver: ">=1.0.0"}'))
    ctx = _context(tmp_path, isolated_redis_url, spec, "render")
    older, newer = "a" * 64, "b" * 64
    manifests = ctx.artifacts.root / "manifests"
    manifests.mkdir(parents=True)
    (manifests / f"{older}.json").write_text(json.dumps({
        "tag": "1.0.0", "annotations": {"org.opencontainers.image.revision": "main@sha1:aa11"}}))
    ctx.status.client.hset(keys.source("git"), mapping={        # the fetch moved on
        "revision": newer, "commit_revision": newer, "commit_subject": f"oci 1.1.0 sha256:{newer}"})
    assert stages.commit_fields(ctx, "web", older)["subject"] == (
        f"oci 1.0.0 sha256:{older} (revision main@sha1:aa11)")


def test_an_unknown_commit_leaves_the_fields_empty(repo, tmp_path, isolated_redis_url):
    ctx = _context(tmp_path, isolated_redis_url, _spec(tmp_path, repo.bare_url()), "render")
    stages.fetch(ctx, "git")
    assert stages.commit_fields(ctx, "web", "0" * 40) == {}
    assert stages.commit_fields(ctx, "web", "") == {}
    stages._COMMITS.clear()
    assert stages.commit_fields(ctx, "no-such-app", repo.head()) == {}     # no source to ask
    entry = HistoryEntry(revision="0" * 40, trigger="beat", result="Failed", message="x", started_at="t0", finished_at="t1")
    assert (entry.author, entry.subject, entry.committed_at) == ("", "", "")


def test_a_held_unit_counts_the_revisions_waiting_from_the_mirror(repo, tmp_path,
                                                                  isolated_redis_url):
    from workers.run import windows

    ctx = _context(tmp_path, isolated_redis_url, _spec(tmp_path, repo.bare_url()), "render")
    first = stages.fetch(ctx, "git")
    for n in (2, 3, 4):
        repo.write("app/cm.yaml", f"kind: ConfigMap\n# {n}\n")
        repo.commit(f"web: config {n}")
    repo.push()
    head = stages.fetch(ctx, "git")
    fleet = ctx.fleet()
    app = fleet.applications["web"]
    assert windows.count(ctx, fleet, app, first, head) == 3
    assert windows.count(ctx, fleet, app, "", head) == 0
    elsewhere = _context(tmp_path, isolated_redis_url, _spec(tmp_path, repo.bare_url()), "pull")
    assert windows.count(elsewhere, fleet, app, first, "f" * 40) == 0    # no mirror here
