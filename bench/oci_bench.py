"""OCI sources against a real registry: range resolution, cold pulls, cache hits, sharing.

Starts go-containerregistry's ``registry`` (``fleetsync dev build``) behind the
recording front of ``devtools.registryproxy`` (plain HTTP on loopback, so the
numbers are the fetch's own, not TLS's) and measures, each the median of ``--runs``:

- ``resolve_500_ms``: an ``oci:`` source with ``semver: ">=1.0.0 <2.0.0"`` over a
  repository of 500 tags (``1.0.0`` .. ``1.499.0``: one page of the tag list, the
  client asks for 1000 a page) resolved to its digest by ``OciArtifacts.fetch`` with
  the tree already on the host (the tag list, one manifest);
- ``chart_cold_ms``: a ``helm create`` chart pushed with ``helm push``, resolved and
  pulled by ``OciCharts`` into an empty cache (tags, manifest, chart blob);
- ``artifact_10mb_cold_ms``: a 10 MB (incompressible) artifact pushed with ``oras``,
  fetched into an empty cache (manifest, 10 MB blob, extraction);
- ``artifact_hit_ms``: the same artifact's ``checkout`` once its tree is on the host;
- ``fleet_100``: 100 clusters rendering the same chart from one host's cache:
  ``blob_pulls`` counts the chart blob's GETs in the registry front's log (must be 1).

    .venv/bin/python bench/oci_bench.py [--runs 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.binaries import find_helm  # noqa: E402
from devtools.gotools import find_tool  # noqa: E402
from devtools.registryproxy import RegistryProxy  # noqa: E402
from shared.spec.model import HELM_REPOSITORY, Chart, OciArtifact, Source  # noqa: E402
from workers.fetch.ociartifact import OciArtifacts  # noqa: E402
from workers.fetch.ocicharts import OciCharts  # noqa: E402

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def start_registry(workdir: Path) -> tuple[subprocess.Popen, RegistryProxy]:
    log = workdir / "registry.log"
    binary = find_tool("registry")
    if binary is None:
        sys.exit("registry not found: run `fleetsync dev build` first")
    proc = subprocess.Popen([str(binary), "-port", "0"], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "serving on port " not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    port = int(log.read_text().split("serving on port ", 1)[1].split()[0])
    return proc, RegistryProxy(("127.0.0.1", port))


def run(argv: list[str], cwd: Path) -> str:
    env = {"PATH": os.defpath, "HOME": str(cwd), "DOCKER_CONFIG": str(cwd / "docker")}
    return subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout


def tag_many(front: RegistryProxy, repo: str, tag: str, count: int) -> None:
    """Give the manifest of ``repo:tag`` ``count`` more tags ``1.<i>.0`` (a PUT each)."""
    request = urllib.request.Request(f"{front.url}/v2/{repo}/manifests/{tag}",
                                     headers={"Accept": MANIFEST})
    with urllib.request.urlopen(request) as resp:
        body = resp.read()
    for i in range(count):
        put = urllib.request.Request(f"{front.url}/v2/{repo}/manifests/1.{i}.0", data=body,
                                     method="PUT", headers={"Content-Type": MANIFEST})
        urllib.request.urlopen(put).close()


def push_artifact(front: RegistryProxy, repo: str, tag: str, size: int, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    (work / "app").mkdir(exist_ok=True)
    (work / "app/config.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    (work / "app/blob.bin").write_bytes(os.urandom(size))
    with tarfile.open(work / "layer.tgz", "w:gz") as tar:
        tar.add(work / "app", arcname="app")
    run([str(find_tool("oras")), "push", "--plain-http", f"{front.host}/{repo}:{tag}",
         "layer.tgz:application/vnd.cncf.flux.content.v1.tar+gzip"], work)


def push_chart(front: RegistryProxy, work: Path) -> None:
    helm = find_helm()
    if helm is None:
        sys.exit("helm not found: run `fleetsync dev build` first")
    work.mkdir(parents=True, exist_ok=True)
    env_dirs = ["--registry-config", str(work / "registry.json")]
    run([str(helm), "create", "web"], work)
    run([str(helm), "package", "web", "--version", "1.2.3"], work)
    run([str(helm), "push", "web-1.2.3.tgz", f"oci://{front.host}/charts", "--plain-http",
         *env_dirs], work)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def timed(fn, runs: int, fresh=None) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(runs):
        if fresh is not None:
            fresh()
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return median_ms(samples)


def measure(front: RegistryProxy, work: Path, runs: int) -> dict[str, object]:
    push_artifact(front, "fleet/ranged", "1.0.0", 1024, work / "ranged")
    tag_many(front, "fleet/ranged", "1.0.0", 500)
    push_artifact(front, "fleet/big", "v1", 10 * 1024 * 1024, work / "big")
    push_chart(front, work / "chart")
    ranged = Source("ranged", f"oci://{front.host}/fleet/ranged", "semver", ">=1.0.0 <2.0.0",
                    60.0, insecure=True, oci=OciArtifact())
    big = Source("big", f"oci://{front.host}/fleet/big", "tag", "v1", 60.0, insecure=True,
                 oci=OciArtifact())
    charts = Source("charts", f"oci://{front.host}/charts", HELM_REPOSITORY, "", 60.0,
                    insecure=True)
    chart = Chart("web", "1.x")
    warm = OciArtifacts(work / "cache-warm")
    warm.fetch(ranged)
    caches = iter(range(10_000))
    state: dict[str, object] = {}

    def fresh() -> None:
        state["dir"] = work / f"cold-{next(caches)}"

    def chart_cold() -> None:
        pulls = OciCharts(Path(str(state["dir"])))
        revision = pulls.fetch(charts, [chart])
        pulls.chart(charts, chart, revision)

    result: dict[str, object] = {
        "resolve_500_ms": timed(lambda: warm.fetch(ranged), runs),
        "chart_cold_ms": timed(chart_cold, runs, fresh),
        "artifact_10mb_cold_ms": timed(lambda: OciArtifacts(Path(str(state["dir"]))).fetch(big),
                                       runs, fresh),
    }
    hit = OciArtifacts(work / "cache-hit")
    revision = hit.fetch(big)
    result["artifact_hit_ms"] = timed(lambda: hit.checkout(big, revision), runs * 20)
    result["fleet_100"] = fleet_100(front, work / "fleet", charts, chart)
    return result


def fleet_100(front: RegistryProxy, root: Path, charts: Source, chart: Chart) -> dict[str, object]:
    """100 clusters' renders ask one host's cache for the same chart: one blob GET."""
    pulls = OciCharts(root)
    revision = pulls.fetch(charts, [chart])
    front.clear()
    started = time.perf_counter()
    for _ in range(100):
        pulls.chart(charts, chart, revision)
    seconds = time.perf_counter() - started
    blobs = [r for r in front.requests if r.method == "GET" and "/blobs/" in r.path]
    return {"clusters": 100, "seconds": round(seconds, 3), "blob_pulls": len(blobs),
            "registry_requests": len(front.requests)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", help="write the result here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="oci-bench-") as tmp:
        proc, front = start_registry(Path(tmp))
        try:
            result = measure(front, Path(tmp), args.runs)
        finally:
            front.close()
            proc.terminate()
            proc.wait(10)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
