"""The Pods behind the demo's claims: what runs, on which image, and how a rollout replaced them.

A Deployment's spec says what Git wants; its Pods say what runs. So the demo
checks each step against the Pods, as a user would with ``kubectl get pods``:
how many are Running and Ready (serving), on which image, and which one waits
in ``ImagePullBackOff``.

A rollout is watched (``kubectl get pods --watch``) rather than polled: kwok runs
a Pod the moment it is scheduled, so a three-Pod rollout is over within a
second, between two polls. The watch sees every change of every Pod, and
``timeline`` folds them into the counts of Pods serving the old and the new
image after each change; a rollout Pod by Pod moves those counts one at a time.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

Counts = tuple[int, int]     # (Pods serving the old image, Pods serving the new one)


@dataclass(frozen=True)
class Pod:
    """One Pod as ``kubectl get pod -o json`` shows it, reduced to what the demo checks."""

    name: str
    image: str
    phase: str
    ready: bool
    waiting: str           # the first waiting container's reason (ImagePullBackOff), or ""
    deleting: bool

    @property
    def serving(self) -> bool:
        return self.phase == "Running" and self.ready and not self.deleting


def pod_of(obj: Mapping) -> Pod:
    meta, spec, status = (obj.get(k) or {} for k in ("metadata", "spec", "status"))
    containers = spec.get("containers") or [{}]
    statuses = status.get("containerStatuses") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or [])
    waiting = next((((s.get("state") or {}).get("waiting") or {}).get("reason", "")
                    for s in statuses if (s.get("state") or {}).get("waiting")), "")
    return Pod(meta.get("name", "?"), containers[0].get("image", ""), status.get("phase", ""),
               ready, waiting, bool(meta.get("deletionTimestamp")))


def pods_of(listing: str) -> list[Pod]:
    """The Pods of a ``kubectl get pods -o json`` listing ("" when kubectl failed: none)."""
    return [pod_of(item) for item in (json.loads(listing).get("items") or [])] if listing else []


def serving(pods: Iterable[Pod], image: str | None = None) -> int:
    return sum(1 for p in pods if p.serving and (image is None or p.image == image))


def only_on(pods: list[Pod], image: str, count: int) -> bool:
    """Exactly ``count`` Pods, all serving ``image``, and none other left (deleting ones aside)."""
    live = [p for p in pods if not p.deleting]
    return len(live) == count and serving(live, image) == count


def describe(pods: Iterable[Pod]) -> str:
    """``3 Running on nginx:1.27.0, 1 Pending (ImagePullBackOff) on nginx:broken``."""
    groups: dict[str, int] = {}
    for p in pods:
        if p.deleting:
            continue
        state = "Running" if p.serving else p.phase + (f" ({p.waiting})" if p.waiting else "")
        key = f"{state} on {p.image}"
        groups[key] = groups.get(key, 0) + 1
    return ", ".join(f"{n} {key}" for key, n in groups.items()) or "no Pods"


def timeline(states: Iterable[Mapping[str, Pod]], old: str, new: str) -> list[Counts]:
    """(old, new) serving counts after each change, repeats dropped."""
    out: list[Counts] = []
    for pods in states:
        counts = (serving(pods.values(), old), serving(pods.values(), new))
        if not out or out[-1] != counts:
            out.append(counts)
    return out


def one_by_one(counts: list[Counts]) -> bool:
    """Did the new image come up, and the old one go away, one Pod at a time?"""
    return all(abs(b[0] - a[0]) + abs(b[1] - a[1]) <= 1 for a, b in zip(counts, counts[1:]))


def show(counts: list[Counts]) -> str:
    return " -> ".join(f"{o}/{n}" for o, n in counts)


class PodWatch:
    """``kubectl get pods --watch`` in a thread, keeping the Pods after each change."""

    def __init__(self, argv: list[str]) -> None:
        self._proc = subprocess.Popen([*argv, "--watch", "--output-watch-events", "-o", "json"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self._pods: dict[str, Pod] = {}
        self.states: list[dict[str, Pod]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        text = ""
        for line in self._proc.stdout:
            text += line
            try:                     # one event a line; a pretty-printed one spans several
                event, text = json.loads(text), ""
            except ValueError:
                continue
            pod = pod_of(event.get("object") or {})
            with self._lock:
                if event.get("type") == "DELETED":
                    self._pods.pop(pod.name, None)
                else:
                    self._pods[pod.name] = pod
                self.states.append(dict(self._pods))

    def mark(self) -> int:
        """Where the changes after now begin in ``states`` (the state at this moment included)."""
        with self._lock:
            return max(len(self.states) - 1, 0)

    def pods(self) -> list[Pod]:
        with self._lock:
            return list(self._pods.values())

    def wait_serving(self, count: int, timeout: float) -> bool:
        """True once ``count`` Pods serve (the watch's first listing is in)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if serving(self.pods()) >= count:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> list[dict[str, Pod]]:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._thread.join(timeout=5)
        with self._lock:
            return list(self.states)
