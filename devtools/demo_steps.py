"""The tutorial's steps, each an action on Git or a cluster and a check on every cluster."""

from __future__ import annotations

import subprocess
from typing import Callable

from devtools import tutorial
from devtools.demo import CLUSTERS, NEW_TAG, OLD_TAG, Demo


def _image(d: Demo, cluster: str, name: str = "web-app") -> str:
    dep = d.deployment(cluster, name)
    return dep["spec"]["template"]["spec"]["containers"][0]["image"] if dep else ""


def _replicas(d: Demo, cluster: str) -> int | None:
    dep = d.deployment(cluster, "web-app")
    return dep["spec"]["replicas"] if dep else None


def _everywhere(d: Demo, check: Callable[[str], bool]) -> Callable[[], bool]:
    return lambda: all(check(cluster) for cluster in CLUSTERS)


def initial_sync(d: Demo) -> str:
    def ready(cluster: str) -> bool:
        status = d.statuses().get(cluster, {})
        return (status.get("phase") == "Ready"
                and _replicas(d, cluster) == tutorial.CLUSTERS[cluster]
                and _image(d, cluster) == f"nginx:{OLD_TAG}")
    took = d.wait_for("initial sync", _everywhere(d, ready), timeout=120)
    return f"all {len(CLUSTERS)} clusters Ready with their replicas (3/2/1) in {took:.1f}s"


def drift(d: Demo) -> str:
    d.kubectl("production", "scale", "deployment", "web-app", "-n", tutorial.APP_NAMESPACE,
              "--replicas", "5")
    took = d.wait_for("drift correction", lambda: _replicas(d, "production") == 3,
                      timeout=d.interval * 4 + 30)
    return f"web-app scaled to 5 by hand in production; back at 3 after {took:.1f}s " \
           f"(interval {d.interval}s)"


def update(d: Demo) -> str:
    tutorial.set_web_image_tag(d.repo, NEW_TAG)
    sha = d.commit(f"web-app: nginx {NEW_TAG}")
    took = d.wait_for("image update",
                      _everywhere(d, lambda c: _image(d, c) == f"nginx:{NEW_TAG}"), timeout=120)
    return f"commit {sha[:8]} (nginx {NEW_TAG}) live on every cluster after {took:.1f}s"


def rollback(d: Demo) -> str:
    subprocess.run(["git", "revert", "--no-edit", "HEAD"], cwd=d.repo, check=True,
                   capture_output=True)
    sha = d.push()
    took = d.wait_for("rollback",
                      _everywhere(d, lambda c: _image(d, c) == f"nginx:{OLD_TAG}"), timeout=120)
    return f"git revert ({sha[:8]}) brought nginx {OLD_TAG} back everywhere after {took:.1f}s"


def prune(d: Demo) -> str:
    for cluster in CLUSTERS:
        tutorial.remove_app(d.repo, cluster, "api-service")
    sha = d.commit("Remove api-service")
    took = d.wait_for("prune", _everywhere(d, lambda c: d.deployment(c, "api-service") is None),
                      timeout=120)
    return f"api-service removed from Git ({sha[:8]}); gone from every cluster after {took:.1f}s"


STEPS: list[tuple[str, Callable[[Demo], str]]] = [
    ("initial sync", initial_sync),
    ("drift", drift),
    ("update", update),
    ("rollback", rollback),
    ("prune", prune),
]
