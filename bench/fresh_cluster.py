"""What the same objects cost without fleetsync, each on a fresh apiserver of its own.

The fleet benchmark compares fleetsync's cold sync with two baselines on the same
machine, in the same run: the apiserver's own limit (every object server-side
applied once by one process with a thread pool) and what users script without
fleetsync (a loop of ``kubectl apply --server-side``, one call per application).
Each starts a bare control plane, measures, and stops it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import kubeapi
from devtools import fleet as devfleet
from fleet_layout import NAMESPACE, app_objects
from procstat import cpu_delta, cpu_seconds, cpu_split


def limit_cold(state: Path, apps: list[str], replicas: int, threads: int,
               validate: bool = False) -> tuple[float, int, dict[str, float]]:
    """(seconds, objects, CPU seconds by part): every app's objects server-side applied
    to a fresh apiserver by this process. With ``validate``, every object is dry-run
    first and one inventory ConfigMap is created per app (``kubeapi.apply_all``)."""
    fresh = devfleet.up(["limit"], state, progress=lambda _: None, workloads=False)
    try:
        api = kubeapi.Api(fresh.clusters["limit"], pool=threads)
        api.ensure_namespace(NAMESPACE)
        api.ensure_namespace(kubeapi.SYSTEM_NAMESPACE)
        objects = [o for app in apps for o in app_objects(app, replicas=replicas)]
        before = {**cpu_split(fresh.processes, {}), "client": cpu_seconds(os.getpid())}
        seconds = kubeapi.apply_all(api, objects, threads, apps if validate else [])
        after = {**cpu_split(fresh.processes, {}), "client": cpu_seconds(os.getpid())}
        return seconds, len(objects), cpu_delta(before, after)     # client: this process only
    finally:
        devfleet.down(state, progress=lambda _: None)


def kubectl_loop(state: Path, repo: Path, apps: list[str], workloads: bool) -> float:
    """Seconds for one ``kubectl apply --server-side`` per app directory on a fresh cluster."""
    fresh = devfleet.up(["kubectl-loop"], state, progress=lambda _: None, workloads=workloads)
    try:
        kubeconfig = fresh.clusters["kubectl-loop"]
        kubeapi.Api(kubeconfig).ensure_namespace(NAMESPACE)
        kubectl = str(Path(sys.executable).with_name("kubectl"))
        started = time.time()
        for name in apps:
            subprocess.run([kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side",
                            "--field-manager", "loop", "-f", str(repo / "apps" / name)],
                           check=True, capture_output=True)
        return time.time() - started
    finally:
        devfleet.down(state, progress=lambda _: None)
