"""What the import-and-sync tests share: run ``fleetsync import``, fill the kubeconfig
placeholders the output names, ``fleetsync validate`` and ``fleetsync sync --local`` it,
render the originals with the real kustomize and helm, and read objects back from a
cluster with the real kubectl."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from scheduler.importers.common import KUBECONFIG_PLACEHOLDER
from tests.conftest import ROOT

KUBECTL = Path(sys.executable).parent / "kubectl"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def cli(*args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scheduler.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def imported(tool: str, paths: list[Path], out: Path,
             kubeconfigs: dict[str, str]) -> subprocess.CompletedProcess:
    """``fleetsync import``, then each placeholder the output names filled with a real
    kubeconfig (every cluster of the output must be in ``kubeconfigs``)."""
    proc = cli("import", tool, *map(str, paths), "-o", str(out))
    text = out.read_text()
    for name in yaml.safe_load(text).get("clusters") or []:
        placeholder = KUBECONFIG_PLACEHOLDER.format(name=name["name"])
        assert f"kubeconfig: {placeholder}" in text, name
        assert "fill kubeconfig" in text
        text = text.replace(placeholder, kubeconfigs[name["name"]])
    out.write_text(text)
    return proc


def env(redis_url: str, tmp: Path) -> dict[str, str]:
    import os

    return {**os.environ, "FLEETSYNC_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT),
            "FLEETSYNC_CACHE_DIR": str(tmp / "cache"), "FLEETSYNC_ALLOW_LOCAL_SOURCES": "true"}


def validate(spec: Path, environ: dict[str, str]) -> None:
    proc = cli("validate", "-f", str(spec), env=environ)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def sync(spec: Path, app: str, cluster: str, environ: dict[str, str]) -> dict[str, Any]:
    proc = cli("sync", app, "--cluster", cluster, "--local", "-o", "json", "-f", str(spec),
               env=environ, timeout=400)
    assert proc.returncode == 0, f"{app} on {cluster}: {proc.stdout}{proc.stderr}"
    result = json.loads(proc.stdout)
    assert result["phase"] == "Ready", result
    return result


def kubectl(kubeconfig: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(KUBECTL), "--kubeconfig", kubeconfig, *args],
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def kustomize(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run([str(KUBECTL), "kustomize", str(directory)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def contains(live: Any, want: Any, where: str = "") -> list[str]:
    """Where ``live`` differs from ``want`` (every field of ``want`` must be in ``live``
    with the same value; the API server may add defaults)."""
    if isinstance(want, dict):
        if not isinstance(live, dict):
            return [f"{where}: {live!r} is not a mapping"]
        return [d for k, v in want.items() for d in contains(live.get(k), v, f"{where}.{k}")]
    if isinstance(want, list):
        if not isinstance(live, list) or len(live) != len(want):
            return [f"{where}: {live!r} != {want!r}"]
        return [d for i, (a, b) in enumerate(zip(live, want)) for d in contains(a, b, f"{where}[{i}]")]
    return [] if live == want else [f"{where}: {live!r} != {want!r}"]


def assert_live(kubeconfig: str, objects: list[dict[str, Any]], namespace: str | None) -> None:
    """Each of ``objects`` is on the cluster with every field it sets (namespaced objects
    without a namespace: in ``namespace``, as fleetsync and Argo CD and Flux default them)."""
    assert objects
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        kind = obj["kind"].lower() + (f".{group}" if group else "")
        meta = obj["metadata"]
        args = ["get", f"{kind}/{meta['name']}", "-o", "json"]
        if obj["kind"] not in CLUSTER_SCOPED:
            args += ["-n", meta.get("namespace") or namespace or "default"]
        live = json.loads(kubectl(kubeconfig, *args).stdout)
        want = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
        want["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        problems = contains(live, want, f"{obj['kind']} {meta['name']}")
        assert not problems, problems


def wait_for(what: str, check: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
