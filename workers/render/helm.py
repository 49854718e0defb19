"""Rendering Helm charts with the real ``helm template``, per cluster, safely.

fleetsync renders charts and applies the output like any other render (one
apply path, one drift story, as Argo CD does) rather than installing releases:
there is no release Secret, and ``lookup`` returns nothing (``helm template``
never talks to a cluster). What this module adds around the binary:

* values: ``merged_values`` deep-merges, later wins, ``helm.valuesFiles`` (files
  of a Git source, in order), ``helm.values``, then each ``helm.valuesByCluster``
  entry whose selector matches the cluster, in order (mappings merge key by key;
  lists and scalars are replaced), and substitutes the cluster's ``${var}`` in
  every string (a value that is only ``${var}`` takes the YAML type of what it
  becomes, as in a text substitution: ``3`` a number, ``true`` a boolean); helm merges the result over the chart's own ``values.yaml``;
* the run: ``helm template <release> <chart> --namespace <ns> -f <values>
  --include-crds --skip-tests`` with ``--kube-version``/``--api-versions`` of the
  target cluster when known (``Capabilities``: what apply workers recorded from
  discovery in Redis; else helm's defaults), an environment of only a private
  empty ``HOME`` and helm's directories below it (no Redis URL, Git token or
  kubeconfig reaches it), a timeout, and output capped while it is read;
* errors: helm's message (template file and line, or the values.schema.json
  field) without temp paths, as ``RenderError``; a timeout is ``TransientError``;
* the output split per template (``# Source:`` lines) so that later errors name
  the template, and ``test`` hooks dropped.

Hook objects (``helm.sh/hook`` pre/post-install, pre/post-upgrade) stay in the
render with their ``helm.sh/hook``, ``helm.sh/hook-weight`` and
``helm.sh/hook-delete-policy`` annotations: ordering them around the rest of
the set is the apply engine's business.

The binary: ``Settings.helm_bin`` (``FLEETSYNC_HELM_BIN``), else ``helm`` on
``PATH``, else the pinned version ``fleetsync dev build`` built into its cache
(``shared.toolcache``: the same order as the dev tools).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from shared.errors import RenderError, TransientError
from shared import toolcache
from shared.settings import Settings
from shared.spec.model import Application, Cluster
from shared.values import deep_merge
from shared.yamlsafe import load_documents
from workers.render.tree import MAX_FILE_BYTES, MAX_TOTAL_BYTES, RawDoc, read_text, resolve_inside
from workers.render.variables import referenced, substitute

DEFAULT_TIMEOUT = 120.0
CHART_FILE = "Chart.yaml"
CAPABILITIES_KEY = "fleetsync:capabilities:{cluster}"   # JSON written by apply workers
HOOK = "helm.sh/hook"
TEST_HOOKS = frozenset({"test", "test-success", "test-failure"})
MAX_MESSAGE = 1200
_SOURCE_LINE = re.compile(r"^# Source: (.+)$", re.M)
_SEPARATOR = re.compile(r"^---[ \t]*$", re.M)
_WHOLE_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:=[^}\n]*)?\}")


@dataclass(frozen=True)
class Capabilities:
    """The target cluster's Kubernetes version and API versions, for ``--kube-version`` and
    ``--api-versions``; unknown (``None``/empty): helm's built-in defaults."""

    kube_version: str | None = None
    api_versions: tuple[str, ...] = ()

    def describe(self) -> dict[str, str]:
        return {"kubeVersion": self.kube_version or "",
                "apiVersions": ",".join(sorted(self.api_versions))}


@dataclass(frozen=True)
class Helm:
    """How this worker runs helm: the binary (None: ``helm`` on PATH), a timeout, the output
    cap, and the target cluster's capabilities."""

    binary: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = MAX_TOTAL_BYTES
    capabilities: Capabilities = field(default_factory=Capabilities)
    cached: str | None = None      # the helm `fleetsync dev build` built: tried after PATH
    # reads the capabilities when a chart first needs them (a unit without one never does)
    read: Callable[[], Capabilities] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, capabilities: Capabilities = Capabilities(),
                      read: Callable[[], Capabilities] | None = None) -> "Helm":
        cached = toolcache.helm_path(settings.tools_dir) if settings.tools_dir else None
        return cls(settings.helm_bin, capabilities=capabilities,
                   cached=str(cached) if cached else None, read=read)

    def target(self) -> Capabilities:
        """The target cluster's capabilities: given, or read once when first asked for."""
        if self.read is not None:
            object.__setattr__(self, "capabilities", self.read())
            object.__setattr__(self, "read", None)
        return self.capabilities

    def executable(self) -> str:
        found = toolcache.find("helm", self.binary, self.cached)
        if not found:
            where = f", nor at {self.cached}" if self.cached else ""
            raise RenderError(f"helm is not installed on this worker (not on PATH{where}; set "
                              "FLEETSYNC_HELM_BIN, or run `fleetsync dev build`, which builds "
                              "it into that cache)")
        return os.path.abspath(found) if os.sep in found else found


def read_capabilities(redis: Any, cluster: str) -> Capabilities:
    """What apply workers recorded of ``cluster`` (``record_capabilities``); else unknown."""
    try:
        raw = redis.get(CAPABILITIES_KEY.format(cluster=cluster))
        data = json.loads(raw) if raw else {}
        return Capabilities(data.get("kubeVersion") or None,
                            tuple(sorted(str(v) for v in data.get("apiVersions") or ())))
    except (ValueError, AttributeError, TypeError):
        return Capabilities()


def record_capabilities(redis: Any, cluster: str, kube_version: str, api_versions: list[str],
                        ttl: float = 24 * 3600.0) -> None:
    """For apply workers, after discovery: the cluster's version and served API versions
    (``apps/v1``, ``monitoring.coreos.com/v1``, and ``apps/v1/Deployment`` forms)."""
    redis.set(CAPABILITIES_KEY.format(cluster=cluster),
              json.dumps({"kubeVersion": kube_version, "apiVersions": sorted(api_versions)}),
              ex=int(ttl))


def is_chart(directory: Path) -> bool:
    return (directory / CHART_FILE).is_file()


@functools.lru_cache(maxsize=4)
def version(binary: str) -> str:
    """``helm version --short`` of ``binary``, once per process."""
    try:
        done = subprocess.run([binary, "version", "--short"], capture_output=True, text=True,
                              timeout=30, env=environment(Path(tempfile.gettempdir())))
        return "helm/" + (done.stdout.strip() or "unknown")
    except (OSError, subprocess.SubprocessError):
        return "helm/none"


# --- values ----------------------------------------------------------------------------------

def _values_file(tree: Path, rel: str, where: str) -> dict[str, Any]:
    path = tree / rel
    resolved = path.resolve()
    if not resolved.is_relative_to(tree.resolve()):
        raise RenderError(f"{where}: values file {rel!r} leaves the repository checkout")
    if not resolved.is_file():
        raise RenderError(f"{where}: values file {rel!r} does not exist in the source")
    if resolved.stat().st_size > MAX_FILE_BYTES:
        raise RenderError(f"{rel}: file is larger than the {MAX_FILE_BYTES} byte limit")
    docs = load_documents(read_text(resolved, rel), rel)
    data = docs[0][1] if docs else {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RenderError(f"{rel}: Helm values must be a mapping, not a {type(data).__name__}")
    return data


def merged_values(app: Application, cluster: Cluster,
                  tree: Path | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The values this cluster renders ``app``'s chart with (see the module docstring), and
    the cluster variables they refer to, with their values."""
    where = f"application {app.name} helm values"
    merged: dict[str, Any] = {}
    for rel in app.helm.values_files:
        if tree is None:
            raise RenderError(f"{where}: valuesFiles apply to Git sources only")
        merged = deep_merge(merged, _values_file(tree, rel, where))
    merged = deep_merge(merged, app.helm.values)
    for entry in app.helm.values_by_cluster:
        if entry.clusters.matches(cluster):
            merged = deep_merge(merged, entry.values)
    variables = cluster.variables()
    used = {name: variables[name] for name in sorted(referenced(json.dumps(merged)))
            if name in variables}
    return _substituted(merged, variables, where), used


def _substituted(value: Any, variables: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        text = substitute(value, variables, where=where)
        return _scalar(text) if _WHOLE_REFERENCE.fullmatch(value) else text
    if isinstance(value, dict):
        return {k: _substituted(v, variables, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v, variables, where) for v in value]
    return value


def _scalar(text: str) -> Any:
    """A value that was only ``${var}`` reads as YAML would after a text substitution:
    ``3`` a number, ``true`` a boolean; anything that is not a plain scalar stays text."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return parsed if isinstance(parsed, (int, float, bool)) else text


# --- helm template ---------------------------------------------------------------------------

def template(chart: Path, release: str, namespace: str, values: Mapping[str, Any], helm: Helm,
             label: str) -> list[RawDoc]:
    """``helm template`` of ``chart`` (a directory or an archive), split per template.

    ``label`` names the chart in messages (its path in the checkout, or name-version)."""
    binary = helm.executable()
    with tempfile.TemporaryDirectory(prefix="fleetsync-helm-") as home:
        values_path = Path(home) / "values.json"
        values_path.write_text(json.dumps(values))
        argv = [binary, "template", release, str(chart), "--namespace", namespace,
                "-f", str(values_path), "--include-crds", "--skip-tests"]
        caps = helm.target()
        if caps.kube_version:
            argv += ["--kube-version", caps.kube_version]
        for api in caps.api_versions:
            argv += ["--api-versions", api]
        out, err, code = _run(argv, Path(home), helm, label)
    if code != 0:
        raise RenderError(f"{label}: helm template failed: {trim(err, chart, home)}")
    return split(out, label)


def environment(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data"),
            "HELM_PLUGINS": str(home / "plugins"), "KUBECONFIG": str(home / "no-kubeconfig"),
            "PATH": os.defpath}


def _run(argv: list[str], home: Path, helm: Helm, label: str) -> tuple[str, str, int]:
    """Run helm, reading at most ``max_bytes`` of output and killing it at the timeout."""
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, cwd=home, env=environment(home), stdout=subprocess.PIPE,
                                    stderr=errors, stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise RenderError(f"{label}: cannot run {argv[0]}: {exc.strerror}") from exc
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            proc.kill()

        timer = threading.Timer(helm.timeout, expire)
        timer.start()
        chunks: list[bytes] = []
        total = 0
        assert proc.stdout is not None
        try:
            while chunk := proc.stdout.read(1 << 16):
                total += len(chunk)
                if total > helm.max_bytes:
                    raise RenderError(f"{label}: helm template output is larger than "
                                      f"{helm.max_bytes} bytes (the render cap)")
                chunks.append(chunk)
            code = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if fired.is_set():
            raise TransientError(f"{label}: helm template timed out after {helm.timeout:g}s")
        errors.seek(0)
        err = errors.read(64 * 1024).decode("utf-8", errors="replace")
    return b"".join(chunks).decode("utf-8", errors="replace"), err, code


def trim(stderr: str, chart: Path, home: str) -> str:
    """helm's message in one line, without ``Error:``, temp paths or the debug hint."""
    text = stderr.replace(str(home) + os.sep, "").replace(str(chart.parent) + os.sep, "")
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.startswith("Use --debug flag")]
    text = " ".join(lines).removeprefix("Error: ") or "helm failed without a message"
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def split(output: str, label: str) -> list[RawDoc]:
    """helm's output as one ``RawDoc`` per template file, in helm's order."""
    docs: list[RawDoc] = []
    for part in _SEPARATOR.split(output):
        if not part.strip():
            continue
        found = _SOURCE_LINE.search(part)
        template_name = found.group(1).strip() if found else "output"
        where = f"{label}: {template_name.split('/', 1)[-1]} (helm template)"
        if docs and docs[-1].source == where:
            docs[-1] = RawDoc(where, docs[-1].text + "---\n" + part)
        else:
            docs.append(RawDoc(where, part))
    return docs


def is_test_hook(obj: Any) -> bool:
    """A ``helm.sh/hook: test`` object: never rendered (``helm test`` runs those)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    hooks = annotations.get(HOOK, "") if isinstance(annotations, dict) else ""
    return isinstance(hooks, str) and bool(TEST_HOOKS & {h.strip() for h in hooks.split(",")})


def chart_directory(tree: Path, rel: str) -> Path | None:
    """The chart directory ``rel`` names in ``tree``, or None when it is no chart."""
    target = resolve_inside(tree, rel)
    return target if is_chart(target) else None
