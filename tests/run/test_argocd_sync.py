"""An Argo CD style repository synced by a real worker: hooks and waves, status and history.

On the cluster with controllers and kwok Nodes, an application whose manifests carry
Argo CD annotations as such repositories have them (a ``generateName`` PreSync Job, a
PostSync Job deleted once it succeeded, a ``Skip`` object, sync waves around a
Deployment) is synced through the queue: the unit is Ready, its history entry and
``fleetsync history`` name the hooks that ran, and a second sync at the same revision
runs none; ``fleetsync diff`` leaves the hooks out and finds the unit in sync.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, new_redis_db
from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def job(meta: dict, phase: str, **notes: str) -> str:
    meta["annotations"] = {"argocd.argoproj.io/hook": phase, **notes}
    return json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
                       "spec": {"backoffLimit": 0, "template": {"spec": {
                           "restartPolicy": "Never",
                           "containers": [{"name": "run", "image": "busybox:1.36"}]}}}})


def configmap(name: str, **notes: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": name, "annotations": notes}, "data": {"v": "1"}})


def test_an_argo_cd_repository_runs_its_hooks_and_waves_and_history_names_them(
        workload_fleet, redis_url, tmp_path):
    from scheduler.client import Client
    from shared.settings import Settings

    stack = Stack(tmp_path, new_redis_db(redis_url), dict(workload_fleet.clusters))
    ns, wave = stack.namespace, "argocd.argoproj.io/sync-wave"
    files = {
        "migrate.yaml": job({"generateName": "migrate-"}, "PreSync"),
        "notify.yaml": job({"name": "notify"}, "PostSync",
                           **{"argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}),
        "debug.yaml": configmap("debug", **{"argocd.argoproj.io/hook": "Skip"}),
        "first.yaml": configmap("first", **{wave: "-1"}),
        "after.yaml": configmap("after", **{wave: "1"}),
        "web.yaml": json.dumps({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                         "containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
    }
    for name, text in files.items():
        stack.repo.write(f"argo/{name}", text)
    sha = stack.repo.commit("an Argo CD application")
    stack.repo.push()
    stack.spec.write_text(
        f"sources:\n  - name: git\n    url: {stack.repo.bare_url()}\n    branch: main\n"
        f"clusters:\n  - name: work-1\n    kubeconfig: {workload_fleet.clusters['work-1']}\n"
        f"applications:\n  - name: {stack.app}\n    source: git\n    path: argo\n"
        f"    clusters: {{names: [work-1]}}\n    namespace: {ns}\n    createNamespace: true\n"
        "    wait: true\n    timeout: 2m\n")
    stack.start_worker("argo")
    api = Client(Settings(redis_url=stack.redis_url))
    try:
        api.sync(stack.app, "work-1")
        stack.wait("Ready at the commit", lambda: stack.ready_at("work-1", sha), timeout=180)
        (entry,) = stack.history("work-1")
        assert entry["hooks"] == [f"PreSync Job/{ns}/migrate-{sha[:7]}-presync",
                                  f"PostSync Job/{ns}/notify"]
        proc = subprocess.run([sys.executable, "-m", "scheduler.cli", "history", stack.app,
                               "--cluster", "work-1"], cwd=ROOT, env=stack.env(),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert f"    hook run: PreSync Job/{ns}/migrate-{sha[:7]}-presync" in proc.stdout
        diff = subprocess.run([sys.executable, "-m", "scheduler.cli", "diff", stack.app,
                               "--cluster", "work-1"], cwd=ROOT, env=stack.env(),
                              capture_output=True, text=True, timeout=120)
        assert diff.returncode == 0 and "in sync" in diff.stdout, diff.stdout + diff.stderr

        from kubernetes import client, config

        core = client.CoreV1Api(config.new_client_from_config(
            config_file=workload_fleet.clusters["work-1"]))
        names = {c.metadata.name for c in core.list_namespaced_config_map(ns).items}
        assert {"first", "after"} <= names and "debug" not in names     # Skip: not applied

        api.sync(stack.app, "work-1")                     # the same revision: no hook
        stack.wait("a second sync recorded", lambda: len(stack.history("work-1")) == 2,
                   timeout=120)
        again = stack.history("work-1")[0]
        assert again["result"] == "Ready" and again["hooks"] == [] and again["writes"] == 0
    finally:
        stack.stop()
