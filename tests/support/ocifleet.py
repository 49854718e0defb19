"""Fleets of one OCI chart for the tests: push a chart with the real helm, write the spec.

``push_chart`` runs ``helm create`` / ``helm package`` / ``helm push`` and returns the
manifest digest helm reports (hex: what the source's revision becomes);
``write_chart_spec`` writes a ``Stack``'s fleet spec for one ``oci://`` source.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from tests.support.helmutil import chart, run
from tests.support.registry import Registry
from tests.support.stack import Stack

VALUES = {"replicaCount": "${replicas}"}
OVERLAY = [{"clusters": {"matchLabels": {"env": "dev"}}, "values": {"service": {"port": 8081}}}]


def write_chart_spec(stack: Stack, url: str, version: str, auth: bool = True, interval: str = "2s",
                     insecure: bool = False, extra: tuple[str, ...] = ()) -> None:
    """One source ``charts`` at ``url``, every session cluster (dev-1 prod with 3 replicas,
    dev-2 dev with 1 and another port), one application of chart ``web`` at ``version``."""
    lines = ["sources:", "  - name: charts", f"    helmRepository: {url}",
             f"    interval: {interval}"]
    lines += ["    auth: {usernameEnv: OCI_USER, passwordEnv: OCI_PASS}"] if auth else []
    lines += ["    insecure: true"] if insecure else []
    lines += list(extra)
    lines += ["clusters:"]
    for name, kubeconfig in stack.kubeconfigs.items():
        lines += [f"  - name: {name}", f"    kubeconfig: {kubeconfig}", "    interval: 2s",
                  "    labels: {team: t, env: " + ("prod" if name == "dev-1" else "dev") + "}",
                  "    vars: {replicas: \"" + ("3" if name == "dev-1" else "1") + "\"}"]
    app = {"name": stack.app, "source": "charts", "clusters": {"matchLabels": {"team": "t"}},
           "namespace": stack.namespace, "createNamespace": True, "wait": False,
           "chart": {"name": "web", "version": version},
           "helm": {"releaseName": "shop", "values": VALUES, "valuesByCluster": OVERLAY}}
    lines += ["applications:", "  - " + json.dumps(app)]
    tmp = stack.spec.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, stack.spec)
    now = time.time() + 2                  # a new mtime even within the same second
    os.utime(stack.spec, (now, now))


def push_chart(registry: Registry, helm: Path, tmp: Path, repo: str, version: str,
               front: Any = None) -> str:
    """Package web ``version`` and ``helm push`` it; its manifest digest (hex)."""
    parent = tmp / f"chart-{version}"
    parent.mkdir()
    directory = chart(helm, parent, "web", version, hook=False)
    run(helm, "package", str(directory), "-d", str(parent))
    out = registry.helm_push(helm, parent / f"web-{version}.tgz", front or registry.basic, repo)
    return re.search(r"Digest: sha256:([0-9a-f]{64})", out)[1]       # type: ignore[index]
