"""A directory holding both ``Chart.yaml`` and a kustomization: kustomize over the chart.

Argo CD's kustomized-helm layout (argocd-example-apps ``plugins/kustomized-helm``)
keeps a chart and a ``kustomization.yaml`` side by side; its plugin runs ``helm
template . > all.yaml && kustomize build``, and the kustomization lists
``all.yaml`` in its ``resources`` without the file being in Git. Rendering only
the chart would drop the kustomization without a word, so the kustomization
decides, and what it says is one of:

    helmCharts renders this very chart     kustomize builds the directory alone (it
      (helmGlobals.chartHome: .., name:    runs helm itself, with allowHelmCharts)
      the directory's name)
    one resources entry names a file that  helm template of the chart (the
      is not in the repository, inside     application's values, release, namespace),
      the directory (``all.yaml``)         written as that file into a private copy
                                           of what kustomize reads; kustomize builds
                                           the copy
    anything else                          refused, naming both files and what to set

``output_entry`` decides (reading only the kustomization), ``build`` runs the
second case. The usual guards hold: the kustomizations are vetted as for any
build (no remote bases unless allowed, nothing outside the checkout), helm runs
as for a chart application (no network, no kubeconfig, a timeout), and the
chart's output never lands in the checkout itself. A sub-directory of a plain
directory with both files is built only in the first case (``refuse_nested``):
its chart would need an application's values.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from shared.errors import RenderError
from workers.render.helm import CHART_FILE
from workers.render.kustomize import build as kustomize_build
from workers.render.kustomize import is_remote, kustomization_file, load_kustomization
from workers.render.sops import Sops
from workers.render.tree import display, inside

RENDERS_ITSELF = ""     # output_entry: the kustomization's helmCharts render the chart
_OUTPUT_SUFFIXES = (".yaml", ".yml")


def is_kustomized_chart(directory: Path) -> bool:
    return (directory / CHART_FILE).is_file() and kustomization_file(directory) is not None


def output_entry(tree: Path, directory: Path) -> str:
    """The ``resources`` entry the chart's output goes into, or ``RENDERS_ITSELF``;
    a ``RenderError`` naming both files when the kustomization says neither."""
    path = kustomization_file(directory)
    if path is None:
        raise RenderError(f"{display(tree, directory)}: no kustomization beside the chart")
    doc = load_kustomization(tree, path)
    chart, kust = display(tree, directory / CHART_FILE), display(tree, path)
    if doc.get("helmCharts") or "helmChartInflationGenerator" in doc:
        if _renders(directory, doc):
            return RENDERS_ITSELF
        raise RenderError(
            f"{chart} and {kust}: the kustomization's helmCharts do not render the chart "
            f"beside it, which would be left out; render it there (helmGlobals.chartHome: .. "
            f"and a helmCharts entry named {directory.name!r}), or move one of the two files "
            "to a directory of its own")
    missing = [entry for entry in _resources(doc) if not is_remote(entry)
               and not os.path.lexists(directory / entry)]
    if len(missing) == 1 and _output_place(directory, missing[0]):
        return missing[0]
    said = (f"its resources entries {', '.join(map(repr, missing))} are not in the repository "
            "and only one can be the chart's output" if len(missing) > 1 else
            f"its resources entry {missing[0]!r} is not a .yaml file inside the directory"
            if missing else "its resources name no file for the chart's output")
    raise RenderError(
        f"{chart} and {kust} are in the same directory, and {said}: to build the kustomization "
        "over the chart's output (Argo CD's kustomized-helm), list one file that is not in "
        "the repository, such as all.yaml, in its resources (fleetsync writes helm template's "
        "output there); to let kustomize render the chart, use helmCharts with "
        "allowHelmCharts: true; or move one of the two files to a directory of its own")


def refuse_nested(tree: Path, directory: Path) -> None:
    """A sub-directory of a plain directory with both files: built only when its
    kustomization renders the chart itself."""
    if is_kustomized_chart(directory) and output_entry(tree, directory) != RENDERS_ITSELF:
        raise RenderError(f"{display(tree, directory / CHART_FILE)}: a chart with a "
                          "kustomization over its output inside a plain directory is not "
                          "rendered; point an application's path at its directory")


def build(tree: Path, directory: Path, entry: str, output: str, *, allow_remote: bool,
          timeout: float, sops: Sops) -> str:
    """kustomize build of ``directory`` with ``output`` (helm template's text) as ``entry``,
    in a private copy: the checkout is never written."""
    return kustomize_build(tree, directory, allow_remote=allow_remote, timeout=timeout,
                           sops=sops, placed={(directory / entry).resolve(): output})


def _renders(directory: Path, doc: dict[str, Any]) -> bool:
    home = doc.get("helmGlobals") if isinstance(doc.get("helmGlobals"), dict) else {}
    chart_home = (directory / str((home or {}).get("chartHome") or "charts")).resolve()
    for item in doc.get("helmCharts") or []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and \
                item.get("version") in (None, "") and \
                (chart_home / item["name"]).resolve() == directory.resolve():
            return True
    return False


def _resources(doc: dict[str, Any]) -> list[str]:
    found = doc.get("resources") or []
    return [r for r in found if isinstance(r, str)] if isinstance(found, list) else []


def _output_place(directory: Path, entry: str) -> bool:
    target = (directory / entry).resolve()
    return inside(directory.resolve(), target) and \
        PurePosixPath(entry).suffix.lower() in _OUTPUT_SUFFIXES
