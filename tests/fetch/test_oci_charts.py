"""OCI chart sources at the adapter: resolution, revisions, archives once per host, refusals.

Charts pushed with the real ``helm push`` to the real registry (TLS + basic auth);
``OciCharts`` resolves them as the fetch stage does and returns verified archives.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from shared.errors import SourceError
from shared.spec.model import HELM_REPOSITORY, Auth, Chart, Source
from tests.support.helmutil import chart, helm, run  # noqa: F401  (helm: a fixture)
from tests.support.registry import PASSWORD, USER, Registry, registry, unique_repo  # noqa: F401
from workers.fetch.ocicharts import OciCharts

ENV = {"REG_USER": USER, "REG_PASS": PASSWORD}


@pytest.fixture(autouse=True)
def _ca(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(registry.ca_file))


def _source(registry: Registry, repo: str) -> Source:
    return Source("charts", f"oci://{registry.basic.host}/{repo}", HELM_REPOSITORY, "", 60.0,
                  Auth(username_env="REG_USER", password_env="REG_PASS"))


def _push(registry: Registry, helm: Path, tmp: Path, repo: str, name: str, version: str) -> Path:
    parent = tmp / f"{name}-{version}"
    parent.mkdir()
    run(helm, "package", str(chart(helm, parent, name, version, hook=False)), "-d", str(parent))
    archive = parent / f"{name}-{version}.tgz"
    registry.helm_push(helm, archive, registry.basic, repo)
    return archive


def test_a_range_resolves_to_the_manifest_digest_and_the_archive_is_verified(
        registry: Registry, helm: Path, tmp_path: Path) -> None:
    repo = unique_repo()
    _push(registry, helm, tmp_path, repo, "web", "1.0.0")
    newest = _push(registry, helm, tmp_path, repo, "web", "1.1.0+build.7")   # tag 1.1.0_build.7
    _push(registry, helm, tmp_path, repo, "web", "2.0.0")
    source, wanted = _source(registry, repo), Chart("web", "1.x")
    charts = OciCharts(tmp_path / "host-a", environ=ENV)
    revision = charts.fetch(source, [wanted])
    assert f"sha256:{revision}" == registry.digest(f"{registry.plain.host}/{repo}/web:1.1.0_build.7")
    archive = charts.chart(source, wanted, revision)
    assert archive.version == "1.1.0+build.7"
    assert archive.digest == hashlib.sha256(newest.read_bytes()).hexdigest()
    assert archive.path.read_bytes() == newest.read_bytes()
    registry.basic.clear()
    assert charts.chart(source, wanted, revision).path == archive.path
    assert not [r for r in registry.basic.requests if "/blobs/" in r.path]   # once per host

    # another host renders the revision the first one fetched: the same chart, by digest
    other = OciCharts(tmp_path / "host-b", environ=ENV).chart(source, wanted, revision)
    assert other.digest == archive.digest and other.version == "1.1.0+build.7"
    assert not [r for r in registry.basic.requests if "/tags/list" in r.path]


def test_several_charts_on_one_source_make_one_revision(registry: Registry, helm: Path,
                                                        tmp_path: Path) -> None:
    repo = unique_repo()
    _push(registry, helm, tmp_path, repo, "web", "0.1.0")
    _push(registry, helm, tmp_path, repo, "api", "3.2.1")
    source = _source(registry, repo)
    charts = OciCharts(tmp_path / "cache", environ=ENV)
    wanted = [Chart("web", "0.1.0"), Chart("api", "~3.2.0")]
    revision = charts.fetch(source, wanted)
    assert revision == charts.fetch(source, list(reversed(wanted)))
    assert {charts.chart(source, c, revision).name for c in wanted} == {"web", "api"}
    _push(registry, helm, tmp_path, repo, "api", "3.2.2")
    assert charts.fetch(source, wanted) != revision            # a new version in range


def test_an_artifact_that_is_not_a_chart_is_refused(registry: Registry, tmp_path: Path) -> None:
    repo = unique_repo()
    (tmp_path / "app.yaml").write_text("kind: ConfigMap\n")
    registry.oras("push", "--plain-http", f"{registry.plain.host}/{repo}/web:1.0.0", "app.yaml",
                  cwd=tmp_path)
    source, wanted = _source(registry, repo), Chart("web", "1.0.0")
    charts = OciCharts(tmp_path / "cache", environ=ENV)
    revision = charts.fetch(source, [wanted])
    with pytest.raises(SourceError, match="is not a Helm chart: it has 0 layers of "
                       "application/vnd.cncf.helm.chart.content.v1.tar.gzip"):
        charts.chart(source, wanted, revision)
    assert not (tmp_path / "cache" / "charts").exists()


def test_a_missing_variable_and_a_bad_url_are_named(registry: Registry, tmp_path: Path) -> None:
    repo = unique_repo()
    with pytest.raises(SourceError, match="environment variable REG_PASS .auth. is not set"):
        OciCharts(tmp_path, environ={"REG_USER": USER}).fetch(_source(registry, repo),
                                                              [Chart("web", "1.0.0")])
    bad = Source("charts", "oci://Registry.example/Charts", HELM_REPOSITORY, "", 60.0)
    with pytest.raises(SourceError, match="is not a repository path"):
        OciCharts(tmp_path, environ={}).fetch(bad, [Chart("web", "1.0.0")])
