"""The Helm keys of a fleet spec: ``helmRepository`` sources, ``chart`` and ``helm`` on
applications.

``load`` reads the rest and hands the nodes here. A Helm repository is
``https://`` (``http://`` only with ``insecure: true`` and never with
credentials, as for Git) or ``oci://``; it has no Git ref, no ``verify`` and no
ssh keys. An application of such a source names a ``chart`` (name and an exact
version or a semver range, read with ``shared.semver`` as Git's semver refs
are) and needs no ``path``; an application of a Git source has a ``path`` (a
directory with ``Chart.yaml`` renders with helm) and no ``chart``. ``helm``
values are arbitrary YAML mappings; ``valuesFiles`` are paths in a Git source.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Collection, Mapping

from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node

from shared.spec import yaml as y
from shared.ocirefs import REPOSITORY, OciUrlError, parse_oci_url
from shared.semver import parse_range, parse_version
from shared.spec.model import Chart, ClusterValues, Helm
from shared.spec.yaml import Map, Report

HELM_SCHEMES = ("https://", "http://", "oci://")
CHART_KEYS = ("name", "version")
HELM_KEYS = ("releaseName", "values", "valuesFiles", "valuesByCluster")
CLUSTER_VALUES_KEYS = ("clusters", "values")
_CHART_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_RELEASE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def repository_problem(url: str) -> str | None:
    """Why ``url`` is not a Helm repository URL, or None."""
    if not url.startswith(HELM_SCHEMES) or len(url.split("://", 1)[1].strip("/")) == 0:
        return (f"unsupported Helm repository {url!r}: use https://host/path, oci://host/path, or "
                "http:// with insecure: true")
    if re.match(r"[a-z]+://[^/@\s]*@", url):
        return "must not carry credentials: reference them with auth.usernameEnv/passwordEnv"
    if url.startswith("oci://"):
        try:
            parse_oci_url(url)
        except OciUrlError as err:
            return str(err)
    return None


def check_repository_source(m: Map, report: Report) -> None:
    """What a Helm repository source may not have: Git refs, verify, ssh keys."""
    for key in ("url", "branch", "tag", "semver", "commit", "defaultBranch", "verify"):
        if key in m.values:
            report.error(m.values[key], m.at(key), "does not apply to a helmRepository source "
                                                   "(it has no Git ref; chart versions are "
                                                   "chosen per application with chart.version)")
    auth = m.values.get("auth")
    if isinstance(auth, MappingNode):
        for key_node, _ in auth.value:
            if getattr(key_node, "value", None) == "sshKeyFile":
                report.error(key_node, m.at("auth.sshKeyFile"),
                             "a Helm repository takes usernameEnv and passwordEnv only")


def _version(text: str) -> str | None:
    if parse_version(text) is not None:
        return None
    try:
        parse_range(text)
    except ValueError as err:
        return f"{err} (give an exact chart version such as 4.11.2 or a range such as 4.11.x)"
    return None


def chart(node: Node, field: str, report: Report) -> Chart | None:
    m = y.mapping(node, field, report, CHART_KEYS, required=CHART_KEYS)
    if m is None:
        return None
    name = m.read("name", partial(y.checked, check=lambda t: None if _CHART_NAME.fullmatch(t)
                                  else f"{t!r} is not a chart name"), report, "")
    version = m.read("version", partial(y.checked, check=_version), report, "")
    return Chart(name, version) if name and version else None


def values(node: Node, field: str, report: Report) -> dict[str, Any] | None:
    """A mapping of any YAML, as plain data."""
    if not isinstance(node, MappingNode):
        report.error(node, field, f"must be a mapping of Helm values, not {y.kind(node)}")
        return None
    try:
        data = SafeConstructor().construct_object(node, deep=True)
    except ConstructorError as err:
        report.error(node, field, f"cannot be read: {err.problem}")
        return None
    if any(not isinstance(key, str) for key in data):
        report.error(node, field, "keys of Helm values must be strings")
        return None
    return dict(data)


def _relative(text: str) -> str | None:
    if text.startswith("/"):
        return "must be relative to the root of the source, not absolute"
    return "must not contain '..' segments" if ".." in text.split("/") else None


def _files(node: Node, field: str, report: Report) -> tuple[str, ...] | None:
    return y.checked_list(node, field, report, _relative)


def helm(node: Node, field: str, report: Report, selector: Any,
         clusters: Collection[str]) -> Helm | None:
    """``helm:``; ``selector`` reads a ``clusters:`` selector (the loader's)."""
    m = y.mapping(node, field, report, HELM_KEYS)
    if m is None:
        return None
    release = m.read("releaseName", partial(y.checked, check=lambda t: None if len(t) <= 53 and
                                            _RELEASE.fullmatch(t) else
                                            f"{t!r} is not a release name (lowercase letters, "
                                            "digits and '-', at most 53 characters)"), report, None)
    by_cluster: list[ClusterValues] = []
    items: list[Node] = m.read("valuesByCluster", y.sequence, report, [])
    for i, item in enumerate(items):
        where = f"{m.at('valuesByCluster')}[{i}]"
        entry = y.mapping(item, where, report, CLUSTER_VALUES_KEYS, required=CLUSTER_VALUES_KEYS)
        if entry is None:
            continue
        chosen = entry.read("clusters", partial(selector, clusters=clusters), report, None)
        data = entry.read("values", values, report, None)
        if chosen is not None and data is not None:
            by_cluster.append(ClusterValues(chosen, data))
    return Helm(release_name=release, values=m.read("values", values, report, {}),
                values_files=m.read("valuesFiles", _files, report, ()),
                values_by_cluster=tuple(by_cluster))


def check_application(m: Map, report: Report, helm_source: bool | None) -> None:
    """``chart`` with a Helm repository source and no ``path``; ``path`` with a Git source.

    ``helm_source`` None: the source is unknown (already a problem)."""
    if helm_source is None:
        return
    if helm_source:
        if "chart" not in m.values:
            report.error(m.node, m.at("chart"), "is required with a helmRepository source "
                                                "(chart: {name: NAME, version: VERSION})")
        if "path" in m.values:
            report.error(m.values["path"], m.at("path"), "does not apply to a helmRepository "
                                                         "source: name the chart with chart:")
        helm_node = m.values.get("helm")
        if isinstance(helm_node, MappingNode):
            for key_node, value in helm_node.value:
                if getattr(key_node, "value", None) == "valuesFiles" and value.value:
                    report.error(key_node, m.at("helm.valuesFiles"),
                                 "applies to Git sources only (files in the source); give "
                                 "values inline with helm.values")
        return
    if "chart" in m.values:
        report.error(m.values["chart"], m.at("chart"), "applies to helmRepository sources only; "
                                                       "with a Git source, point path at the "
                                                       "chart's directory (it holds Chart.yaml)")


def named_source_is_helm(node: Node, sources: Mapping[str, Any]) -> bool | None:
    """Whether the application ``node`` names a Helm repository source; None: unknown."""
    known = _named_source(node, sources)
    return bool(known.helm_repository) if known is not None else None


def _named_source(node: Node, sources: Mapping[str, Any]) -> Any:
    if not isinstance(node, MappingNode):
        return None
    for key_node, value in node.value:
        if getattr(key_node, "value", None) == "source" and isinstance(value.value, str):
            known = sources.get(value.value)
            return known[0] if known else None
    return None


def check_oci_chart(m: Map, report: Report, sources: Mapping[str, Any]) -> None:
    """A chart of an ``oci://`` source is a repository below its path: lowercase, as the
    registry names repositories (``shared.ocirefs``)."""
    source = _named_source(m.node, sources)
    chart_node = m.values.get("chart")
    if source is None or not source.url.startswith("oci://") or not isinstance(chart_node,
                                                                                MappingNode):
        return
    for key_node, value in chart_node.value:
        if getattr(key_node, "value", None) == "name" and isinstance(value.value, str) \
                and not REPOSITORY.fullmatch(value.value):
            report.error(value, m.at("chart.name"), f"{value.value!r} is not a repository name in "
                         "an OCI registry (lowercase letters, digits and . _ - separators)")
