"""The demo's reading of Pods: what serves, on which image, and whether a rollout went Pod by Pod."""

from __future__ import annotations

import json

from devtools.demo_pods import Pod, describe, one_by_one, only_on, pod_of, pods_of, show, timeline


def pod(name: str, image: str, *, ready: bool = True, phase: str = "Running",
        waiting: str = "", deleting: bool = False) -> dict:
    state = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    meta = {"name": name, **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})}
    return {"metadata": meta, "spec": {"containers": [{"name": "web", "image": image}]},
            "status": {"phase": phase,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"name": "web", "state": state}]}}


def test_a_pod_serves_when_running_ready_and_not_deleted():
    assert pod_of(pod("a", "nginx:1")).serving
    assert not pod_of(pod("a", "nginx:1", deleting=True)).serving
    stuck = pod_of(pod("b", "nginx:broken", ready=False, phase="Pending",
                       waiting="ImagePullBackOff"))
    assert not stuck.serving and stuck.waiting == "ImagePullBackOff"
    assert pod_of({}) == Pod("?", "", "", False, "", False)


def test_listing_and_description():
    listing = json.dumps({"items": [
        pod("a", "nginx:1"), pod("b", "nginx:1"), pod("c", "nginx:1", deleting=True),
        pod("d", "nginx:broken", ready=False, phase="Pending", waiting="ImagePullBackOff")]})
    pods = pods_of(listing)
    assert describe(pods) == "2 Running on nginx:1, 1 Pending (ImagePullBackOff) on nginx:broken"
    assert not only_on(pods, "nginx:1", 2)
    assert only_on(pods[:3], "nginx:1", 2)
    assert pods_of("") == [] and describe([]) == "no Pods"


def test_a_rolling_update_is_seen_pod_by_pod():
    old, new = "nginx:1", "nginx:2"
    p = {n: pod_of(pod(n, old)) for n in "abc"}
    states = [dict(p)]
    for i, name in enumerate("abc"):
        p[f"n{i}"] = pod_of(pod(f"n{i}", new, ready=False, phase="Pending"))
        states.append(dict(p))                      # created: no change in what serves
        p[f"n{i}"] = pod_of(pod(f"n{i}", new))
        states.append(dict(p))
        p[name] = pod_of(pod(name, old, deleting=True))
        states.append(dict(p))
        del p[name]
        states.append(dict(p))
    counts = timeline(states, old, new)
    assert show(counts) == "3/0 -> 3/1 -> 2/1 -> 2/2 -> 1/2 -> 1/3 -> 0/3"
    assert one_by_one(counts)
    assert not one_by_one([(3, 0), (0, 3)])
