"""One entry of the fleet spec's ``applications:`` list, read into an ``Application``.

``load`` walks the file and hands each application node here with the sources
and cluster names already read, so that references to them are checked as the
application is read (``no source named ...``). The keys that have a module of
their own are handed on with this module's readers: ``helm`` and ``rollout``
get ``selector`` (and ``scalars.duration``) so that a selector reads the same
everywhere in the file. The service account rule (``service_account``) is
shared with clusters, which ``load`` reads.

Like every reader here, ``application`` reports what is wrong and falls back to
a default so that the walk goes on; it returns the model object with the
mapping it was read from (``Built``), whose nodes later checks (``dependencies``,
the empty-selector warning) point at.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Collection, Mapping, Protocol, TypeVar

from yaml.nodes import Node, ScalarNode

from shared.spec import health as spec_health
from shared.spec import helm as spec_helm
from shared.spec import rollout as spec_rollout
from shared.spec import yaml as y
from shared.spec.model import Application, Directory, Helm, IgnoreRule, Selector, Source
from shared.spec.scalars import app_path, dns_name, duration
from shared.spec.yaml import Map, Report

APP_KEYS = ("name", "source", "path", "clusters", "namespace", "prune", "wait", "timeout",
            "dependsOn", "suspend", "adopt", "allowRemoteBases", "directory", "allowEmpty",
            "force", "createNamespace", "chart", "helm", "allowHelmCharts",
            "serviceAccountName", "serviceAccountNamespace", "allowedNamespaces", "allowedKinds",
            "deniedKinds", "onRemoval", "rollout", "drift", "ignoreDifferences",
            "healthChecks", "statuslessKinds", "suspendedIs")
_SELECTOR_KEYS = ("names", "matchLabels")
_DIRECTORY_KEYS = ("recurse", "include", "exclude")
_IGNORE_KEYS = ("group", "kind", "name", "jsonPointers", "managedFields")


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)
Built = tuple[N, Map]      # a model object and the mapping it was read from


def application(node: Node, field: str, report: Report, sources: Mapping[str, Built[Source]],
                clusters: Collection[str]) -> Built[Application] | None:
    helm_source = spec_helm.named_source_is_helm(node, sources)
    required = ("name", "source", "clusters") if helm_source else ("name", "source", "path",
                                                                   "clusters")
    m = y.mapping(node, field, report, APP_KEYS, required=required)
    if m is None:
        return None
    app = Application(
        name=m.read("name", dns_name, report, ""),
        source=m.read("source", partial(_reference, known=sources, what="source"), report, ""),
        path=m.read("path", partial(y.checked, check=app_path), report, ""),
        clusters=m.read("clusters", partial(selector, clusters=clusters), report, Selector()),
        namespace=m.read("namespace", dns_name, report, None),
        prune=(pruning := m.read("prune", _prune, report, "true")) != "false",
        wait=m.read("wait", y.boolean, report, True),
        timeout=m.read("timeout", duration, report, 120.0),
        depends_on=m.read("dependsOn", partial(y.names, known=None, what="application"), report, ()),
        suspend=m.read("suspend", y.boolean, report, False),
        adopt=m.read("adopt", y.boolean, report, False),
        allow_remote_bases=m.read("allowRemoteBases", y.boolean, report, False),
        directory=m.read("directory", _directory, report, Directory()),
        allow_empty=m.read("allowEmpty", y.boolean, report, False),
        force=m.read("force", y.boolean, report, False),
        create_namespace=m.read("createNamespace", y.boolean, report, False),
        chart=m.read("chart", spec_helm.chart, report, None),
        helm=m.read("helm", partial(spec_helm.helm, selector=selector, clusters=clusters),
                    report, Helm()),
        allow_helm_charts=m.read("allowHelmCharts", y.boolean, report, False),
        allowed_namespaces=m.read("allowedNamespaces",
                                  partial(y.names, known=None, what="namespace"), report, ()),
        allowed_kinds=m.read("allowedKinds", _kinds, report, ()),
        denied_kinds=m.read("deniedKinds", _kinds, report, ()),
        on_removal=m.read("onRemoval", partial(y.checked, check=_on_removal), report, "orphan"),
        rollout=m.read("rollout", partial(spec_rollout.rollout, selector=selector,
                                          durations=duration, clusters=clusters), report, None),
        drift=m.read("drift", partial(y.checked, check=_drift_mode), report, "correct"),
        ignore_differences=m.read("ignoreDifferences", _ignore_rules, report, ()),
        health_checks=m.read("healthChecks", spec_health.checks, report, ()),
        statusless_kinds=m.read("statuslessKinds", spec_health.kinds, report, ()),
        suspended_is=m.read("suspendedIs", spec_health.suspended_is, report, "Suspended"))
    app = dataclasses.replace(
        app, prune_adopted=pruning == "adopted",
        service_account=service_account(m, report, app.namespace))
    spec_helm.check_application(m, report, helm_source)
    spec_helm.check_oci_chart(m, report, sources)
    if app.create_namespace and "namespace" not in m.values:
        report.error(m.values["createNamespace"], m.at("createNamespace"),
                     "needs the application's namespace: set namespace to the one to create")
    return (app, m) if app.name else None


def service_account(m: Map, report: Report, namespace: str | None) -> str | None:
    """``namespace/name`` from ``serviceAccountName`` and ``serviceAccountNamespace`` (by
    default ``namespace``, the application's)."""
    account = m.read("serviceAccountName", dns_name, report, None)
    account_ns = m.read("serviceAccountNamespace", dns_name, report, None) or namespace
    if "serviceAccountNamespace" in m.values and "serviceAccountName" not in m.values:
        report.error(m.values["serviceAccountNamespace"], m.at("serviceAccountNamespace"),
                     "needs serviceAccountName")
    if account and not account_ns:
        report.error(m.values["serviceAccountName"], m.at("serviceAccountName"),
                     "needs serviceAccountNamespace (or, on an application, its namespace)")
        return None
    return f"{account_ns}/{account}" if account else None


def selector(node: Node, field: str, report: Report, clusters: Collection[str]) -> Selector | None:
    m = y.mapping(node, field, report, _SELECTOR_KEYS)
    if m is None:
        return None
    if len(m.values) != 1:
        report.error(node, field, "give exactly one of names or matchLabels")
        return None
    if "names" in m.values:
        names = y.names(m.values["names"], m.at("names"), report, known=clusters, what="cluster")
        return Selector(names=names) if names is not None else None
    labels = y.string_map(m.values["matchLabels"], m.at("matchLabels"), report)
    return Selector(match_labels=labels) if labels is not None else None


def _reference(node: Node, field: str, report: Report, known: Collection[str], what: str) -> str | None:
    name = y.string(node, field, report)
    if name is not None and name not in known:
        report.error(node, field, f"no {what} named {name!r}")
    return name


def _drift_mode(text: str) -> str | None:
    return None if text in ("correct", "detect") else f"must be correct or detect, not {text!r}"


def _pointer(text: str) -> str | None:
    return None if text.startswith("/") and len(text) > 1 else \
        f"{text!r} is not a JSON pointer (it starts with /, e.g. /spec/replicas)"


def _ignore_rules(node: Node, field: str, report: Report) -> tuple[IgnoreRule, ...] | None:
    items = y.sequence(node, field, report)
    if items is None:
        return None
    rules = []
    for i, item in enumerate(items):
        at = f"{field}[{i}]"
        m = y.mapping(item, at, report, _IGNORE_KEYS)
        if m is None:
            continue
        none: tuple[str, ...] = ()
        pointers = m.read("jsonPointers", partial(y.checked_list, check=_pointer), report, none)
        managers = m.read("managedFields", partial(y.names, known=None, what="manager"), report,
                          none)
        if not pointers and not managers:
            report.error(item, at, "give jsonPointers (with a kind) or managedFields")
        if pointers and "kind" not in m.values:
            report.error(item, at, "jsonPointers need the kind they apply to")
        rules.append(IgnoreRule(m.read("group", y.string, report, None),
                                m.read("kind", y.string, report, None),
                                m.read("name", y.string, report, None), pointers, managers))
    return tuple(rules)


def _on_removal(text: str) -> str | None:
    return None if text in ("orphan", "prune") else f"must be orphan or prune, not {text!r}"


def _prune(node: Node, field: str, report: Report) -> str | None:
    """``true``, ``false`` or ``adopted`` (adopted objects are pruned too)."""
    if isinstance(node, ScalarNode) and node.value == "adopted":
        return "adopted"
    value = y.boolean(node, field, Report(report.file))
    if value is None:
        report.error(node, field, f"must be true, false or adopted, not {y.kind(node)}")
        return None
    return str(value).lower()


def _kind_pattern(text: str) -> str | None:
    group, _, kind = text.rpartition("/")
    if not kind or "/" in group or not (kind == "*" or kind[:1].isupper()):
        return f"{text!r} is not a kind: write Kind, group/Kind or group/* (core for the core group)"
    return None


def _kinds(node: Node, field: str, report: Report) -> tuple[str, ...] | None:
    return y.checked_list(node, field, report, _kind_pattern)


def _glob(text: str) -> str | None:
    if text.startswith("/"):
        return f"{text!r} must be relative to the application path, not absolute"
    return "must not contain '..' segments" if ".." in text.split("/") else None


def _globs(node: Node, field: str, report: Report) -> tuple[str, ...] | None:
    return y.checked_list(node, field, report, _glob)


def _directory(node: Node, field: str, report: Report) -> Directory | None:
    m = y.mapping(node, field, report, _DIRECTORY_KEYS)
    if m is None:
        return None
    return Directory(recurse=m.read("recurse", y.boolean, report, False),
                     include=m.read("include", _globs, report, ()),
                     exclude=m.read("exclude", _globs, report, ()))
