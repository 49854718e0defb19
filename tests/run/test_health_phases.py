"""A unit's phase tells the truth about its workloads: real controllers, kwok Pods, real workers.

One stack (Git repo, spec, one worker, beat every 2 s) on the ``work-1`` cluster,
which runs kube-controller-manager, kube-scheduler and kwok Nodes. Nothing here
patches a status: rollouts, Pods and their failures are the cluster's own
(``devtools/kwok_stages.yaml``: the image tag ``broken``, the Pod label
``fleetsync.dev/chaos=crashloop``). The tests follow one unit through its life.
"""

from __future__ import annotations

import json

import pytest

from tests.support.stack import Stack

pytestmark = [pytest.mark.k8s, pytest.mark.slow]
CLUSTER = "work-1"


@pytest.fixture(scope="module")
def stack(workload_fleet, redis_url, tmp_path_factory):
    from tests.conftest import new_redis_db

    s = Stack(tmp_path_factory.mktemp("health"), new_redis_db(redis_url),
              dict(workload_fleet.clusters))
    s.write_spec([CLUSTER], wait="60s")
    s.start_worker("w1")
    s.start_beat()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kube(workload_fleet):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=workload_fleet.clusters[CLUSTER])
    yield client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    api_client.close()


def web(namespace: str, image: str) -> str:
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}}})


def commit(stack: Stack, message: str, files: dict[str, str | None]) -> str:
    for path, text in files.items():
        if text is None:
            stack.repo.remove(path)
        else:
            stack.repo.write(path, text)
    sha = stack.repo.commit(message)
    stack.repo.push()
    return sha


def phase_is(stack: Stack, phase: str, revision: str, *words: str):
    def check() -> bool:
        status = stack.status(CLUSTER)
        return (status["phase"] == phase and status["revision"] == revision
                and all(w in status["message"] for w in words))
    return check


def ready_pods(core, namespace: str, image: str) -> list[str]:
    return sorted(p.metadata.name for p in core.list_namespaced_pod(
        namespace, label_selector="app=web").items
        if p.spec.containers[0].image == image and p.status.phase == "Running"
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []))


def test_a_rollout_is_progressing_until_its_pods_are_ready(stack, kube):
    core, _ = kube
    rev = stack.repo.head()
    stack.wait("Ready", phase_is(stack, "Ready", rev), timeout=120)
    assert len(ready_pods(core, stack.namespace, "nginx:1.25")) == 2
    history = stack.history(CLUSTER)                         # newest first
    rolling = [i for i, e in enumerate(history) if e["result"] == "Progressing"
               and f"waiting for Deployment/{stack.namespace}/web" in e["message"]]
    assert rolling and history[0]["result"] == "Ready", history
    # Ready was told by the run's health follow-up, or by the next tick's run if it came first
    assert any(e["result"] == "Ready" for e in history[:rolling[-1]])


def test_a_broken_image_turns_the_unit_degraded_while_the_old_pods_serve(stack, kube):
    core, _ = kube
    old = ready_pods(core, stack.namespace, "nginx:1.25")
    broken = commit(stack, "web: broken image",
                    {"app/deployment.yaml": web(stack.namespace, "nginx:broken")})
    stack.wait("Degraded on the broken image",
               phase_is(stack, "Degraded", broken, f"Deployment/{stack.namespace}/web",
                        "ImagePullBackOff"), timeout=120)
    assert ready_pods(core, stack.namespace, "nginx:1.25") == old      # still serving
    reverted = stack.repo.revert(broken)
    stack.repo.push()
    stack.wait("Ready after git revert", phase_is(stack, "Ready", reverted), timeout=120)
    assert ready_pods(core, stack.namespace, "nginx:1.25") == old


def test_a_pod_crash_looping_after_a_ready_sync_turns_the_unit_degraded_and_back(stack, kube):
    core, _ = kube
    rev = stack.repo.head()
    stack.wait("Ready", phase_is(stack, "Ready", rev), timeout=120)
    victim = ready_pods(core, stack.namespace, "nginx:1.25")[0]
    core.patch_namespaced_pod(victim, stack.namespace,
                              {"metadata": {"labels": {"fleetsync.dev/chaos": "crashloop"}}})
    stack.wait("Degraded, naming the crash-looping Pod",
               phase_is(stack, "Degraded", rev, f"Pod {victim}", "CrashLoopBackOff"), timeout=120)
    core.delete_namespaced_pod(victim, stack.namespace)     # its ReplicaSet replaces it
    stack.wait("Ready again, with no change in Git", phase_is(stack, "Ready", rev), timeout=120)
    assert stack.repo.head() == rev


def test_pruning_a_namespace_and_a_deployment_leaves_nothing_behind(stack, kube):
    core, apps = kube
    extra_ns = f"{stack.namespace}-extra"
    added = commit(stack, "extra namespace", {"app/extra.yaml": "\n---\n".join([
        json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": extra_ns}}),
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "inside", "namespace": extra_ns}, "data": {"a": "1"}}),
    ])})
    stack.wait("the extra namespace applied", phase_is(stack, "Ready", added), timeout=120)
    replicasets = apps.list_namespaced_replica_set(stack.namespace, label_selector="app=web")
    assert replicasets.items
    pruned = commit(stack, "drop web and the extra namespace",
                    {"app/extra.yaml": None, "app/deployment.yaml": None})
    stack.wait("pruned", phase_is(stack, "Ready", pruned), timeout=120)

    def gone() -> bool:
        names = [n.metadata.name for n in core.list_namespace().items]
        left = (apps.list_namespaced_replica_set(stack.namespace, label_selector="app=web").items
                + core.list_namespaced_pod(stack.namespace, label_selector="app=web").items)
        return extra_ns not in names and not left
    stack.wait("the namespace finalized and the ReplicaSets and Pods collected", gone,
               timeout=120)
