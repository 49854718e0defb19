"""Chart URLs in a Helm repository's index.yaml obey the source's transport rules.

A real Helm repository (``helm package`` + ``helm repo index``) over loopback
HTTP or HTTPS serves an ``index.yaml`` rewritten the way its author could write
it: a ``file://`` URL into the worker's disk, a plain ``http://`` URL to another
listener, an ``http://`` URL on the repository's own host and port. A refused
URL is named, nothing is opened, and credentials only ever travel over HTTPS to
the repository's own origin.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from shared.errors import SourceError
from shared.spec.model import HELM_REPOSITORY, Auth, Chart, Source
from tests.support.helmutil import ChartServer, chart, helm  # noqa: F401  (helm: a fixture)
from workers.fetch.helmrepo import ChartRepositories

CREDENTIALS = {"CHARTS_USER": "fleet", "CHARTS_TOKEN": "s3cret-token"}
AUTH = Auth(username_env="CHARTS_USER", password_env="CHARTS_TOKEN")


def _repository(helm: Path, tmp_path: Path, name: str, tls: bool) -> ChartServer:
    server = ChartServer(helm, tmp_path / name, tls=tls)
    (tmp_path / f"{name}-src").mkdir()
    server.publish(chart(helm, tmp_path / f"{name}-src", version="0.1.0", hook=False))
    return server


@pytest.fixture()
def https_repo(helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[ChartServer]:
    server = _repository(helm, tmp_path, "tls-repo", tls=True)
    monkeypatch.setenv("SSL_CERT_FILE", server.ca_file)     # the client trusts its certificate
    yield server
    server.close()


@pytest.fixture()
def listener(helm: Path, tmp_path: Path) -> Iterator[ChartServer]:
    """Another host, over plain HTTP: it must receive nothing."""
    server = _repository(helm, tmp_path, "elsewhere", tls=False)
    yield server
    server.close()


def point_chart_at(server: ChartServer, url: str, digest: str | None = None) -> None:
    """Rewrite the served index: the chart web 0.1.0 is at ``url``."""
    index_file = server.root / "index.yaml"
    index = yaml.safe_load(index_file.read_text())
    entry = index["entries"]["web"][0]
    entry["urls"] = [url]
    entry["digest"] = digest or entry["digest"]
    index_file.write_text(yaml.safe_dump(index))


def digest_of(server: ChartServer) -> str:
    """The sha256 of the archive ``server`` serves (packaged apart: its bytes differ)."""
    return hashlib.sha256(server.archive("web", "0.1.0").read_bytes()).hexdigest()


def source(server: ChartServer, **kw: object) -> Source:
    return Source("charts", server.url, HELM_REPOSITORY, "", 60.0, **kw)  # type: ignore[arg-type]


def download(server: ChartServer, src: Source, root: Path) -> str:
    repos = ChartRepositories(root, environ=CREDENTIALS)
    return str(repos.chart(src, Chart("web", "0.1.0"), repos.fetch(src)).path)


def test_a_file_chart_url_is_refused_without_reading_the_file(listener: ChartServer,
                                                              tmp_path: Path) -> None:
    secret = tmp_path / "worker-secret.key"
    secret.write_bytes(b"the worker's private key\n")
    url = f"file://{secret}"
    point_chart_at(listener, url, digest="0" * 64)
    with pytest.raises(SourceError) as caught:
        download(listener, source(listener, insecure=True), tmp_path / "cache")
    message = str(caught.value)
    assert f"gives the chart URL {url}, refused" in message
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in message
    assert "sha256" not in message
    assert not list((tmp_path / "cache").glob("charts/*.tgz"))


def test_plain_http_chart_urls_need_insecure_on_the_source(https_repo: ChartServer,
                                                           listener: ChartServer,
                                                           tmp_path: Path) -> None:
    url = f"{listener.url}/web-0.1.0.tgz"
    point_chart_at(https_repo, url, digest_of(listener))
    with pytest.raises(SourceError) as caught:
        download(https_repo, source(https_repo), tmp_path / "cache")
    assert f"gives the chart URL {url}, refused: plain http://" in str(caught.value)
    assert sum(listener.counts.values()) == 0
    # the same index on a source that accepts plain http (and has no credentials): fetched
    assert download(https_repo, source(https_repo, insecure=True), tmp_path / "cache")
    assert listener.counts["/web-0.1.0.tgz"] == 1


@pytest.mark.parametrize("insecure", [False, True])
def test_credentials_never_travel_in_clear_to_the_repositorys_host(
        https_repo: ChartServer, tmp_path: Path, insecure: bool) -> None:
    url = https_repo.url.replace("https://", "http://") + "/web-0.1.0.tgz"  # same host and port
    point_chart_at(https_repo, url)
    with pytest.raises(SourceError) as caught:
        download(https_repo, source(https_repo, auth=AUTH, insecure=insecure), tmp_path / "c")
    assert https_repo.plain == []                   # nothing reached the port in clear
    assert f"gives the chart URL {url}, refused: plain http://" in str(caught.value)


def test_credentials_go_to_the_repositorys_https_origin_only(https_repo: ChartServer,
                                                              helm: Path,
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    other = _repository(helm, tmp_path, "release-host", tls=True)
    try:
        both = tmp_path / "ca.pem"
        both.write_text(Path(https_repo.ca_file).read_text() + Path(other.ca_file).read_text())
        monkeypatch.setenv("SSL_CERT_FILE", str(both))
        src = source(https_repo, auth=AUTH)
        assert download(https_repo, src, tmp_path / "own")      # relative URL: its own origin
        point_chart_at(https_repo, f"{other.url}/web-0.1.0.tgz", digest_of(other))
        assert download(https_repo, src, tmp_path / "other")    # another https origin
    finally:
        other.close()
    sent = "Basic ZmxlZXQ6czNjcmV0LXRva2Vu"                       # fleet:s3cret-token
    assert https_repo.authorization["/index.yaml"] == [sent, sent]
    assert https_repo.authorization["/web-0.1.0.tgz"] == [sent]
    assert other.authorization["/web-0.1.0.tgz"] == [None]
