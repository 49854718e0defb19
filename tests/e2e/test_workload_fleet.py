"""A local cluster with workloads: real controllers, scheduler and kwok Nodes.

Nothing here patches a status: Deployments, ReplicaSets, Pods, Jobs and
Namespaces get theirs from kube-controller-manager, kube-scheduler and kwok's
Stages, including the failures asked for by an image tag (broken, crashloop, fail).
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, TypeVar

import pytest

pytestmark = pytest.mark.k8s

T = TypeVar("T")
TIMEOUT = 90.0
_names = itertools.count(1)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = TIMEOUT,
             seen: Callable[[], object] | None = None) -> T:
    """Poll ``check`` until it returns something truthy; fail with what was last seen."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f"; last seen: {seen()}" if seen else ""
            pytest.fail(f"{what} did not happen within {timeout:.0f}s{detail}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def api(workload_fleet):
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=workload_fleet.clusters["work-1"])
    yield client, api_client
    api_client.close()


@pytest.fixture()
def ns(api):
    client, api_client = api
    core = client.CoreV1Api(api_client)
    name = f"wl-{next(_names)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def deployment(name: str, image: str, replicas: int) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def job(name: str, image: str) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "task", "image": image}]}}}}


def pods(api, ns: str, app: str) -> list:
    client, api_client = api
    return client.CoreV1Api(api_client).list_namespaced_pod(ns, label_selector=f"app={app}").items


def pod_ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def summary(items: list) -> list[str]:
    out = []
    for pod in items:
        states = [(s.state.waiting.reason if s.state.waiting else
                   "running" if s.state.running else "terminated", s.restart_count)
                  for s in pod.status.container_statuses or []]
        out.append(f"{pod.metadata.name} {pod.status.phase} ready={pod_ready(pod)} {states}")
    return out


def test_nodes_are_ready_and_named_in_state(workload_fleet, api):
    client, api_client = api
    nodes = client.CoreV1Api(api_client).list_node().items
    assert sorted(n.metadata.name for n in nodes) == workload_fleet.nodes["work-1"]
    assert all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
               for n in nodes)
    names = {p.name for p in workload_fleet.processes}
    assert {"work-1-controller-manager", "work-1-scheduler", "work-1-kwok"} <= names
    # kwok renews a Lease per Node, so the node controller never marks them NotReady
    leases = client.CoordinationV1Api(api_client)
    wait_for(lambda: sorted(x.metadata.name for x in
                            leases.list_namespaced_lease("kube-node-lease").items)
             == workload_fleet.nodes["work-1"], "a Lease per Node")


def test_deployment_becomes_available_with_running_pods(api, ns):
    client, api_client = api
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(ns, deployment("web", "nginx:1.25.3", 3))
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).status.available_replicas == 3,
             "3/3 available", seen=lambda: apps.read_namespaced_deployment("web", ns).status)
    running = [p for p in pods(api, ns, "web") if p.status.phase == "Running" and pod_ready(p)]
    assert len(running) == 3
    assert all(p.spec.node_name and p.spec.node_name.startswith("kwok-node-") for p in running)


def test_image_change_rolls_out_a_new_replicaset(api, ns):
    client, api_client = api
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(ns, deployment("web", "nginx:1.25.3", 3))
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).status.available_replicas == 3,
             "first rollout")
    apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": "nginx:1.27.0"}]}}}})

    def rolled_out() -> bool:
        dep = apps.read_namespaced_deployment("web", ns)
        st = dep.status
        return (st.observed_generation == dep.metadata.generation and st.updated_replicas == 3
                and st.available_replicas == 3 and not st.unavailable_replicas
                and (st.replicas or 0) == 3)

    wait_for(rolled_out, "rollout of nginx:1.27.0",
             seen=lambda: apps.read_namespaced_deployment("web", ns).status)
    sets = apps.list_namespaced_replica_set(ns, label_selector="app=web").items
    by_image = {rs.spec.template.spec.containers[0].image: rs for rs in sets}
    assert set(by_image) == {"nginx:1.25.3", "nginx:1.27.0"}
    assert by_image["nginx:1.27.0"].status.ready_replicas == 3
    assert by_image["nginx:1.25.3"].spec.replicas == 0
    wait_for(lambda: sorted(p.spec.containers[0].image for p in pods(api, ns, "web"))
             == ["nginx:1.27.0"] * 3, "old Pods gone", seen=lambda: summary(pods(api, ns, "web")))


def test_broken_tag_is_never_ready(api, ns):
    client, api_client = api
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(ns, deployment("web", "nginx:broken", 2))

    def backing_off() -> bool:
        found = pods(api, ns, "web")
        statuses = [s for p in found for s in p.status.container_statuses or []]
        return len(found) == 2 and len(statuses) == 2 and all(
            s.state.waiting is not None and s.state.waiting.reason == "ImagePullBackOff"
            for s in statuses)

    wait_for(backing_off, "ImagePullBackOff on both Pods", seen=lambda: summary(pods(api, ns, "web")))
    found = pods(api, ns, "web")
    assert all(p.status.phase == "Pending" and not pod_ready(p) for p in found)
    status = apps.read_namespaced_deployment("web", ns).status
    assert not status.available_replicas and status.unavailable_replicas == 2


def test_crashloop_tag_restarts(api, ns):
    client, api_client = api
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(ns, deployment("web", "example.com/app:crashloop", 1))

    def restarting() -> bool:
        found = pods(api, ns, "web")
        statuses = [s for p in found for s in p.status.container_statuses or []]
        return len(found) == 1 and bool(statuses) and all(
            s.restart_count >= 2 and s.state.waiting is not None
            and s.state.waiting.reason == "CrashLoopBackOff" and s.last_state.terminated is not None
            for s in statuses)

    wait_for(restarting, "CrashLoopBackOff with restartCount >= 2",
             seen=lambda: summary(pods(api, ns, "web")))
    [pod] = pods(api, ns, "web")
    assert pod.status.phase == "Running" and not pod_ready(pod)
    assert not apps.read_namespaced_deployment("web", ns).status.available_replicas


def _job_condition(api, ns: str, name: str) -> str | None:
    client, api_client = api
    st = client.BatchV1Api(api_client).read_namespaced_job(name, ns).status
    done = [c.type for c in st.conditions or [] if c.type in ("Complete", "Failed")
            and c.status == "True"]
    return done[0] if done else None


def test_job_completes(api, ns):
    client, api_client = api
    client.BatchV1Api(api_client).create_namespaced_job(ns, job("migrate", "busybox:1.36"))
    assert wait_for(lambda: _job_condition(api, ns, "migrate"), "Job finished") == "Complete"
    assert client.BatchV1Api(api_client).read_namespaced_job("migrate", ns).status.succeeded == 1


def test_job_with_image_fail_fails(api, ns):
    client, api_client = api
    client.BatchV1Api(api_client).create_namespaced_job(ns, job("migrate", "fail"))
    assert wait_for(lambda: _job_condition(api, ns, "migrate"), "Job finished") == "Failed"
    st = client.BatchV1Api(api_client).read_namespaced_job("migrate", ns).status
    assert st.failed == 1 and not st.succeeded


def test_deleted_namespace_with_objects_finalizes(api):
    from kubernetes.client.rest import ApiException

    client, api_client = api
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    name = f"wl-gone-{next(_names)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="settings"), data={"a": "1"}))
    apps.create_namespaced_deployment(name, deployment("web", "nginx:1.25.3", 2))
    wait_for(lambda: apps.read_namespaced_deployment("web", name).status.available_replicas == 2,
             "2/2 available")
    core.delete_namespace(name)

    def gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, f"Namespace {name} finalized",
             seen=lambda: core.read_namespace(name).status)
    terminating = [n.metadata.name for n in core.list_namespace().items
                   if n.status.phase == "Terminating" and n.metadata.name.startswith("wl-gone-")]
    assert terminating == []


def test_deleting_a_deployment_collects_its_replicasets_and_pods(api, ns):
    client, api_client = api
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(ns, deployment("web", "nginx:1.25.3", 2))
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).status.available_replicas == 2,
             "2/2 available")
    assert apps.list_namespaced_replica_set(ns, label_selector="app=web").items
    apps.delete_namespaced_deployment("web", ns)
    wait_for(lambda: not apps.list_namespaced_replica_set(ns, label_selector="app=web").items
             and not pods(api, ns, "web"), "ReplicaSets and Pods collected",
             seen=lambda: summary(pods(api, ns, "web")))


def test_a_new_namespace_gets_its_default_serviceaccount(api, ns):
    client, api_client = api
    core = client.CoreV1Api(api_client)
    wait_for(lambda: [sa for sa in core.list_namespaced_service_account(ns).items
                      if sa.metadata.name == "default"], "ServiceAccount default created")


def test_a_broken_rollout_keeps_the_old_pods_serving(api, ns):
    client, api_client = api
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(ns, deployment("web", "nginx:1.25.3", 3))
    wait_for(lambda: apps.read_namespaced_deployment("web", ns).status.available_replicas == 3,
             "3/3 available")
    apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": "nginx:broken"}]}}}})

    def stuck() -> bool:
        found = pods(api, ns, "web")
        new = [p for p in found if p.spec.containers[0].image == "nginx:broken"]
        return bool(new) and all(
            s.state.waiting is not None and s.state.waiting.reason == "ImagePullBackOff"
            for p in new for s in p.status.container_statuses or []) and all(
            p.status.container_statuses for p in new)

    wait_for(stuck, "the new Pod in ImagePullBackOff", seen=lambda: summary(pods(api, ns, "web")))
    def one_updated():
        status = apps.read_namespaced_deployment("web", ns).status
        return status if status.updated_replicas == 1 else None

    assert wait_for(one_updated, "updatedReplicas 1").available_replicas == 3
    old = [p for p in pods(api, ns, "web") if p.spec.containers[0].image == "nginx:1.25.3"]
    assert len(old) == 3 and all(pod_ready(p) for p in old)
