"""The tutorial's steps, each an action on Git or a cluster and a check on every cluster.

Every check looks at the Pods, not only at the Deployment's spec: a step is done
when fleetsync says so (the unit's phase at the commit's revision) and the Pods
agree (how many serve, on which image). A step returns its one-line result;
lines after the first are details the CLI indents under it.
"""

from __future__ import annotations

import subprocess
import time
from typing import Callable

from devtools import demo_pods, tutorial
from devtools.demo import BROKEN_TAG, CLUSTERS, NEW_TAG, OLD_TAG, Demo, DemoFailed
from devtools.demo_pods import only_on, serving

WEB = "Deployment/web/web-app"
FAILING = "production"          # the cluster whose overlay gets the broken image


def _image(d: Demo, cluster: str, name: str = "web-app") -> str:
    dep = d.deployment(cluster, name)
    return dep["spec"]["template"]["spec"]["containers"][0]["image"] if dep else ""


def _replicas(d: Demo, cluster: str) -> int | None:
    dep = d.deployment(cluster, "web-app")
    return dep["spec"]["replicas"] if dep else None


def _everywhere(d: Demo, check: Callable[[str], bool]) -> Callable[[], bool]:
    return lambda: all(check(cluster) for cluster in CLUSTERS)


def _phase(d: Demo, cluster: str, phase: str, revision: str = "") -> bool:
    status = d.statuses().get(cluster, {})
    return status.get("phase") == phase and (not revision or status.get("revision") == revision)


def _running(d: Demo, image: str, app: str = "web-app") -> Callable[[str], bool]:
    """Every Pod of ``app`` on the cluster serves ``image``, as many as the tutorial asks."""
    return lambda c: only_on(d.pods(c, app), image, tutorial.CLUSTERS[c])


def _counts() -> str:
    return "/".join(str(n) for n in tutorial.CLUSTERS.values())


def initial_sync(d: Demo) -> str:
    nginx = f"nginx:{OLD_TAG}"
    api = _running(d, "ghcr.io/example/api:1.0.0", "api-service")
    took = d.wait_for("initial sync", _everywhere(
        d, lambda c: _phase(d, c, "Ready") and _running(d, nginx)(c) and api(c)), timeout=120)
    return (f"all {len(CLUSTERS)} clusters Ready; web-app and api-service Pods Running "
            f"{_counts()} ({nginx}) after {took:.1f}s")


def _after_next_run(d: Demo, cluster: str) -> None:
    """Return just after ``cluster``'s unit ended a run: the next is about an interval away."""
    last = d.statuses().get(cluster, {}).get("last_synced_at")
    d.wait_for(f"a reconcile of {cluster}",
               lambda: d.statuses().get(cluster, {}).get("last_synced_at") != last,
               timeout=d.interval * 3 + 30)


def drift(d: Demo) -> str:
    wanted = tutorial.CLUSTERS["production"]
    for attempt in range(1, 4):
        # kwok runs the hand-made Pods within a second; should a reconcile come first,
        # scale again just after one, which leaves an interval for them to start.
        if attempt > 1:
            _after_next_run(d, "production")
        scaled = time.monotonic()
        d.kubectl("production", "scale", "deployment", "web-app", "-n", tutorial.APP_NAMESPACE,
                  "--replicas", "5")
        seen: list[bool] = []

        def five_or_corrected() -> bool:
            seen.append(serving(d.pods("production")) == 5)
            return seen[-1] or _replicas(d, "production") == wanted

        five = d.wait_for("5 Pods, or the correction", five_or_corrected,
                          timeout=d.interval * 4 + 30)
        if seen[-1]:
            break
    else:
        raise DemoFailed("drift: fleetsync corrected every scale to 5 before its Pods ran")
    d.wait_for("drift correction", lambda: _replicas(d, "production") == wanted
               and only_on(d.pods("production"), f"nginx:{OLD_TAG}", wanted),
               timeout=d.interval * 4 + 30)
    took = time.monotonic() - scaled
    again = f", attempt {attempt}" if attempt > 1 else ""
    return (f"web-app scaled to 5 by hand in production: 5 Pods Running after {five:.1f}s; "
            f"back at {wanted} Pods after {took:.1f}s (interval {d.interval}s{again})")


def update(d: Demo) -> str:
    image, old = f"nginx:{NEW_TAG}", f"nginx:{OLD_TAG}"
    watch = d.watch_pods("production")
    try:
        if not watch.wait_serving(tutorial.CLUSTERS["production"], timeout=30):
            raise DemoFailed(f"update: production's Pods not seen: {demo_pods.describe(watch.pods())}")
        begin = watch.mark()
        tutorial.set_web_image_tag(d.repo, NEW_TAG)
        sha = d.commit(f"web-app: nginx {NEW_TAG}")
        d.commits["update"] = sha
        took = d.wait_for("image update", _everywhere(
            d, lambda c: _phase(d, c, "Ready", sha) and _running(d, image)(c)), timeout=120)
    finally:
        states = watch.stop()
    counts = demo_pods.timeline(states[begin:], old, image)
    if not demo_pods.one_by_one(counts):
        raise DemoFailed(f"update: production's rollout was not Pod by Pod: "
                         f"{demo_pods.show(counts)} (old/new Pods serving)")
    fewest = min(o + n for o, n in counts)
    return (f"commit {sha[:8]} ({image}) Ready with every Pod on it after {took:.1f}s "
            f"(Git polled every {d.fetch_interval}s)\n"
            f"production rolled out Pod by Pod, old/new Pods serving: {demo_pods.show(counts)}; "
            f"never fewer than {fewest} serving")


def _break_image(d: Demo, cluster: str) -> None:
    """Production's overlay pins nginx to the broken tag; the other clusters keep the base."""
    path = d.repo / "clusters" / cluster / "kustomization.yaml"
    text = path.read_text(encoding="utf-8")
    if "\nimages:" in text:
        raise DemoFailed(f"{path}: already sets images; the demo adds its own")
    path.write_text(text + f"images:\n- name: nginx\n  newTag: {BROKEN_TAG}\n", encoding="utf-8")


def _degraded(d: Demo, sha: str) -> bool:
    status = d.statuses().get(FAILING, {})
    message = status.get("message", "")
    return (status.get("phase") == "Degraded" and status.get("revision") == sha
            and WEB in message and "ImagePullBackOff" in message)


def failed_rollout(d: Demo) -> str:
    good, bad = f"nginx:{NEW_TAG}", f"nginx:{BROKEN_TAG}"
    replicas = tutorial.CLUSTERS[FAILING]
    others = [c for c in CLUSTERS if c != FAILING]
    _break_image(d, FAILING)
    sha = d.commit(f"web-app in {FAILING}: {bad}")
    took = d.wait_for(f"{FAILING} Degraded on {bad}", lambda: _degraded(d, sha) and all(
        _phase(d, c, "Ready", sha) for c in others), timeout=120)
    message = d.statuses()[FAILING]["message"]
    pods = d.pods(FAILING)
    stuck = [p for p in pods if p.image == bad and not p.deleting]
    if serving(pods, good) != replicas or not any(p.waiting == "ImagePullBackOff" for p in stuck):
        raise DemoFailed(f"failed rollout: {FAILING}'s Pods: {demo_pods.describe(pods)}")
    subprocess.run(["git", "revert", "--no-edit", "HEAD"], cwd=d.repo, check=True,
                   capture_output=True)
    revert = d.push()
    back = d.wait_for("revert of the broken image", _everywhere(
        d, lambda c: _phase(d, c, "Ready", revert) and _running(d, good)(c)), timeout=120)
    return (f"{bad} in {FAILING} ({sha[:8]}): Degraded after {took:.1f}s, "
            f"{len(others)} other clusters Ready; git revert ({revert[:8]}): Ready after "
            f"{back:.1f}s, {replicas} Pods on {good}\n"
            f"Degraded: {message}\n"
            f"meanwhile {FAILING}'s Pods: {demo_pods.describe(pods)}")


def rollback(d: Demo) -> str:
    subprocess.run(["git", "revert", "--no-edit", d.commits["update"]], cwd=d.repo, check=True,
                   capture_output=True)
    sha = d.push()
    image = f"nginx:{OLD_TAG}"
    took = d.wait_for("rollback", _everywhere(
        d, lambda c: _phase(d, c, "Ready", sha) and _running(d, image)(c)), timeout=120)
    return (f"git revert of {d.commits['update'][:8]} ({sha[:8]}) brought {image} back: "
            f"every Pod on it after {took:.1f}s")


def prune(d: Demo) -> str:
    for cluster in CLUSTERS:
        tutorial.remove_app(d.repo, cluster, "api-service")
    sha = d.commit("Remove api-service")
    took = d.wait_for("prune", _everywhere(
        d, lambda c: d.deployment(c, "api-service") is None and not d.pods(c, "api-service")),
        timeout=120)
    return (f"api-service removed from Git ({sha[:8]}); its Deployment and Pods gone from "
            f"every cluster after {took:.1f}s")


STEPS: list[tuple[str, Callable[[Demo], str]]] = [
    ("initial sync", initial_sync),
    ("drift", drift),
    ("update", update),
    ("failed rollout", failed_rollout),
    ("rollback", rollback),
    ("prune", prune),
]
