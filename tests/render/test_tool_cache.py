"""`fleetsync render` finds helm and sops where `fleetsync dev build` puts them.

As a new user types it after `make demo`: neither ``FLEETSYNC_HELM_BIN`` nor
``FLEETSYNC_SOPS_BIN`` set, neither binary on ``PATH``, the real ones in the dev
build's cache (``$XDG_CACHE_HOME/fleetsync/k8s/...``): a chart and a SOPS
secret render through the CLI. The variables, when set, still win; and the
dev tools and the workers name the same cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import binaries
from shared import toolcache
from shared.errors import RenderError
from shared.settings import from_env
from tests.conftest import ROOT
from tests.render.test_sops import PASSWORD, SECRET, encrypt, key, tools  # noqa: F401  (fixtures)
from tests.support.gitutil import GitRepo
from tests.support.helmutil import chart, helm  # noqa: F401  (helm: a fixture)
from workers.render.helm import Helm
from workers.render.sops import Sops

BARE_PATH = "/usr/bin:/bin"          # git, and neither helm nor sops


@pytest.fixture()
def dev_cache(tmp_path: Path, helm: Path, tools: dict[str, Path]) -> Path:
    """An XDG cache laid out as `fleetsync dev build` leaves it, holding the real binaries."""
    xdg = tmp_path / "xdg"
    tools_dir = toolcache.tools_dir({"XDG_CACHE_HOME": str(xdg)})
    for place, real in ((toolcache.helm_path(tools_dir), helm),
                        (toolcache.sops_path(tools_dir), tools["sops"])):
        place.parent.mkdir(parents=True)
        place.symlink_to(real)
    return xdg


def fleet(tmp_path: Path, helm: Path, tools: dict[str, Path], key) -> Path:  # noqa: F811
    repo = GitRepo(tmp_path / "gitops")
    (repo.path / "charts").mkdir(parents=True)
    chart(helm, repo.path / "charts", hook=False)
    (repo.path / "secrets").mkdir()
    (repo.path / "secrets" / "db.yaml").write_text(encrypt(tools, key, SECRET, "db.yaml"))
    repo.commit("a chart and a secret")
    repo.push()
    spec = tmp_path / "fleet.yaml"
    spec.write_text(
        f"sources:\n  - name: gitops\n    url: {repo.bare_url()}\n    branch: main\n"
        "clusters:\n  - name: dev-1\n"
        "applications:\n"
        "  - name: web\n    source: gitops\n    path: charts/web\n    namespace: web\n"
        "    clusters: {names: [dev-1]}\n"
        "  - name: db\n    source: gitops\n    path: secrets\n    namespace: db\n"
        "    clusters: {names: [dev-1]}\n")
    return spec


def test_fleetsync_render_finds_helm_and_sops_in_the_dev_build_cache(
        tmp_path: Path, helm: Path, tools: dict[str, Path], key, dev_cache: Path) -> None:  # noqa: F811
    spec = fleet(tmp_path, helm, tools, key)
    env = {"HOME": str(tmp_path / "home"), "PATH": BARE_PATH, "XDG_CACHE_HOME": str(dev_cache),
           "PYTHONPATH": str(ROOT), "FLEETSYNC_FLEET": str(spec),
           "FLEETSYNC_CACHE_DIR": str(tmp_path / "cache"), "FLEETSYNC_ALLOW_LOCAL_SOURCES": "true",
           "FLEETSYNC_SOPS_AGE_KEY_FILE": str(key.path)}
    for app, wanted in (("web", "kind: Deployment"), ("db", f"password: {PASSWORD}")):
        proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "render", app, "--cluster",
                               "dev-1"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert wanted in proc.stdout, proc.stdout


def test_the_variables_and_path_come_before_the_cache(tmp_path: Path, dev_cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", BARE_PATH)
    settings = from_env({"XDG_CACHE_HOME": str(dev_cache)})
    cached = toolcache.tools_dir({"XDG_CACHE_HOME": str(dev_cache)})
    assert Helm.from_settings(settings).executable() == str(toolcache.helm_path(cached))
    given = from_env({"XDG_CACHE_HOME": str(dev_cache), "FLEETSYNC_HELM_BIN": "/opt/helm",
                      "FLEETSYNC_SOPS_BIN": "/opt/sops"})
    assert Helm.from_settings(given).executable() == "/opt/helm"
    assert Sops.from_settings(given).binary == "/opt/sops"
    on_path = tmp_path / "on-path"
    on_path.mkdir()
    (on_path / "helm").symlink_to(toolcache.helm_path(cached))
    monkeypatch.setenv("PATH", f"{on_path}:{BARE_PATH}")
    assert Helm.from_settings(settings).executable() == str(on_path / "helm")


def test_without_any_helm_the_message_names_the_cache(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", BARE_PATH)
    settings = from_env({"XDG_CACHE_HOME": str(tmp_path / "empty")})
    with pytest.raises(RenderError) as caught:
        Helm.from_settings(settings).executable()
    assert f"nor at {tmp_path / 'empty'}/fleetsync/k8s/helm-" in str(caught.value)
    assert "run `fleetsync dev build`" in str(caught.value), "the one command that builds it"


def test_dev_tools_and_workers_name_the_same_cache(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = from_env(dict(os.environ))
    assert Helm.from_settings(settings).cached == str(binaries.helm_dir() / "helm")
    assert Sops.from_settings(settings).cached == str(binaries.sops_dir() / "sops")
