"""Read fleet.yaml into a validated ``Fleet``, naming the line of every problem.

Nothing may be scheduled from a file that does not validate, and an operator
fixing it wants every problem at once, each with its place. So the file is
composed (not constructed) with PyYAML's safe loader, which keeps each node's
start mark, and the node tree is walked once to build the model while problems
are collected as ``file:line: field.path: message``:

    size check -> compose (anchors/aliases refused) -> sources, clusters
    -> applications (source and cluster references) -> dependsOn (names, cycles)
    -> warnings (selectors that match no cluster) -> Fleet or SpecError

The generic node readers live in ``yaml``; this module holds the fleet's
rules. A reader reports what is wrong and returns ``None``; the builder falls
back to a default so the walk goes on, and a fleet is returned only when no
problem was found.
"""

from __future__ import annotations

import dataclasses
import re
from functools import partial
from typing import Callable, Collection, Mapping, Protocol, Sequence, TypeVar

from yaml.nodes import Node, ScalarNode, SequenceNode

from shared.spec import yaml as y
from shared.errors import SpecError
from shared.refnames import ref_name_problem
from shared.semver import parse_range
from shared.spec import helm as spec_helm
from shared.spec import rollout as spec_rollout
from shared.spec.model import (HELM_REPOSITORY, Application, Auth, Cluster, Directory, Fleet, Helm,
                               IgnoreRule, Selector, Source)
from shared.spec.model import Notifications
from shared.spec.notify import read_notifications
from shared.spec.source import SOURCE_KEYS, read_security
from shared.spec.yaml import Map, Report

MAX_BYTES = 1024 * 1024

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMIT = re.compile(r"[0-9a-fA-F]{7,40}")
_URLS = (re.compile(r"(https?|ssh)://[^\s/]+(/\S*)?"), re.compile(r"file://\S+"),
         re.compile(r"[\w.-]+@[\w.-]+:\S+"), re.compile(r"/\S+"))
_URL_PASSWORD = re.compile(r"[a-z]+://[^/@\s]*:[^/@\s]*@")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

_TOP_KEYS = ("sources", "clusters", "applications", "notifications")
_REF_KINDS = ("branch", "tag", "semver", "commit")
_SOURCE_KEYS = ("name", "url", "helmRepository", *_REF_KINDS, "interval", "auth", *SOURCE_KEYS)
_AUTH_KEYS = ("sshKeyFile", "usernameEnv", "passwordEnv")
_CLUSTER_KEYS = ("name", "kubeconfig", "context", "labels", "vars", "interval",
                 "serviceAccountName", "serviceAccountNamespace")
_SELECTOR_KEYS = ("names", "matchLabels")
_APP_KEYS = ("name", "source", "path", "clusters", "namespace", "prune", "wait", "timeout",
             "dependsOn", "suspend", "adopt", "allowRemoteBases", "directory", "allowEmpty",
             "force", "createNamespace", "chart", "helm", "allowHelmCharts",
             "serviceAccountName", "serviceAccountNamespace", "allowedNamespaces", "allowedKinds",
             "deniedKinds", "onRemoval", "rollout", "drift", "ignoreDifferences")
_DIRECTORY_KEYS = ("recurse", "include", "exclude")
_SECRET = ("inline secrets are not allowed: put the value in an environment variable "
           "and reference it with usernameEnv/passwordEnv, or give sshKeyFile")
_SECRET_HINTS = {k: _SECRET for k in ("password", "token", "secret", "username", "user",
                                      "privateKey", "sshKey", "apiKey")}



class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)
Built = tuple[N, Map]      # a model object and the mapping it was read from


def load_fleet(path: str) -> Fleet:
    """Parse and validate ``path``; raise ``SpecError`` listing every problem."""
    return load(path)


def load(path: str) -> Fleet:
    """Parse and validate ``path``; raise ``SpecError`` listing every problem."""
    fleet, problems, _ = validate_file(path)
    if problems or fleet is None:
        raise SpecError(problems)
    return fleet


def validate_file(path: str) -> tuple[Fleet | None, list[str], list[str]]:
    """(fleet or None, problems, warnings); the fleet is None whenever a problem was found."""
    report = Report(path)
    root = y.compose(path, report, MAX_BYTES)
    fleet = _fleet(root, report) if root is not None else None
    problems = report.problems()
    return (None if problems else fleet), problems, report.warnings()


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``5m``, ``1h``, ``1m30s``, ``500ms`` or a bare integer of seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+", text, re.ASCII):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    else:
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 5m, 1h, 1m30s, 500ms or whole seconds")
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    return seconds


# -- checks on single values ------------------------------------------------

def _dns_label(text: str) -> str | None:
    if _DNS_LABEL.fullmatch(text):
        return None
    return (f"{text!r} is not a valid name: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters")


def _url_problem(url: str) -> str | None:
    if _URL_PASSWORD.match(url):
        return "must not carry a password: reference one with auth.usernameEnv/passwordEnv"
    if any(p.fullmatch(url) for p in _URLS):
        return None
    return (f"unsupported URL {url!r}: use https://, http://, ssh://, git@host:path, file:// "
            "or an absolute path")


def _ref_problem(ref_kind: str, ref: str) -> str | None:
    if ref_kind == "commit":
        return None if _COMMIT.fullmatch(ref) else "must be 7 to 40 hexadecimal characters"
    if ref_kind == "semver":
        try:
            parse_range(ref)
        except ValueError as err:
            return str(err)
        return None
    return ref_name_problem(ref_kind, ref)


def _env_name(text: str) -> str | None:
    if _VAR_NAME.fullmatch(text):
        return None
    return "must be the name of an environment variable (letters, digits and '_'), not its value"


def _var_name(name: str) -> str | None:
    if name == "cluster_name":
        return "cluster_name is reserved: it is always the cluster's name"
    return None if _VAR_NAME.fullmatch(name) else "variable names must match [A-Za-z_][A-Za-z0-9_]*"


def _app_path(path: str) -> str | None:
    if path.startswith("/"):
        return "must be relative to the root of the source, not absolute"
    if ".." in path.split("/"):
        return "must not contain '..' segments"
    refs = re.findall(r"\$\{([^}]*)\}", path)
    bad = [r for r in refs if not _VAR_NAME.fullmatch(r)]
    if bad:
        return f"bad variable reference ${{{bad[0]}}}: names are letters, digits and '_'"
    if path.count("${") != len(refs):
        return "unterminated variable reference '${'"
    return None


def _duration(node: Node, field: str, report: Report) -> float | None:
    if not isinstance(node, ScalarNode) or node.tag in (y.BOOL, y.NULL):
        report.error(node, field, f"must be a duration such as 30s or 5m, not {y.kind(node)}")
        return None
    try:
        return parse_duration(node.value)
    except ValueError as err:
        report.error(node, field, str(err))
        return None


_name: y.Reader[str] = partial(y.checked, check=_dns_label)


# -- the model ----------------------------------------------------------------

def _fleet(root: Node, report: Report) -> Fleet | None:
    top = y.mapping(root, "", report, _TOP_KEYS)
    if top is None:
        return None
    sources = _named(top, "sources", "source", _source, report)
    clusters = _named(top, "clusters", "cluster", _cluster, report)
    build_app = partial(_application, sources=sources, clusters=clusters)
    apps = _named(top, "applications", "application", build_app, report)
    if apps and "sources" not in top.values:
        report.error(root, "sources", "is required when applications are listed")
    _check_dependencies(apps, report)
    _warn_empty_selectors(apps, [c for c, _ in clusters.values()], report)
    notify = partial(read_notifications, applications=apps, durations=_duration)
    notifications = top.read("notifications", notify, report, Notifications())
    return Fleet(sources={k: v for k, (v, _) in sources.items()},
                 clusters={k: v for k, (v, _) in clusters.items()},
                 applications={k: v for k, (v, _) in apps.items()},
                 path=report.file, warnings=tuple(report.warnings()),
                 notifications=notifications)


def _named(top: Map, key: str, what: str, build: Callable[[Node, str, Report], Built[N] | None],
           report: Report) -> dict[str, Built[N]]:
    """Build each item of a top-level list; names must be unique per kind (file order kept)."""
    node = top.values.get(key)
    if node is None or (isinstance(node, ScalarNode) and node.tag == y.NULL):
        return {}  # an empty "applications:" is an empty list
    out: dict[str, Built[N]] = {}
    for i, item in enumerate(y.sequence(node, key, report) or []):
        built = build(item, f"{key}[{i}]", report)
        if built is None:
            continue
        name, m = built[0].name, built[1]
        if name in out:
            first = y.line(out[name][1].values["name"])
            message = f"duplicate {what} name {name!r} (first at line {first})"
            report.error(m.values["name"], m.at("name"), message)
        else:
            out[name] = built
    return out


def _source(node: Node, field: str, report: Report) -> Built[Source] | None:
    m = y.mapping(node, field, report, _SOURCE_KEYS, required=("name",))
    if m is None:
        return None
    name = m.read("name", _name, report, "")
    if "helmRepository" in m.values:      # a Helm chart repository: no Git ref
        spec_helm.check_repository_source(m, report)
        url = m.read("helmRepository", partial(y.checked, check=spec_helm.repository_problem),
                     report, "")
        ref_kind, ref = HELM_REPOSITORY, ""
    else:
        if "url" not in m.values:
            report.error(node, m.at("url"), "is required")
        url = m.read("url", partial(y.checked, check=_url_problem), report, "")
        ref_kind, ref = _ref(m, report)
    interval = m.read("interval", _duration, report, 60.0)
    auth = m.read("auth", _auth, report, Auth())
    security = read_security(m, url, auth, report)
    return (Source(name, url, ref_kind, ref, interval, auth, **security), m) if name else None


def _ref(m: Map, report: Report) -> tuple[str, str]:
    kinds = [k for k in _REF_KINDS if k in m.values]
    if len(kinds) != 1:
        found = f" (found {', '.join(kinds)})" if kinds else ""
        report.error(m.node, m.field, f"give exactly one of branch, tag, semver, commit{found}")
        return "", ""
    ref_kind = kinds[0]
    check = partial(_ref_problem, ref_kind)
    return ref_kind, m.read(ref_kind, partial(y.checked, check=check), report, "")


def _auth(node: Node, field: str, report: Report) -> Auth | None:
    m = y.mapping(node, field, report, _AUTH_KEYS, hints=_SECRET_HINTS)
    if m is None:
        return None
    env = partial(y.checked, check=_env_name)
    auth = Auth(ssh_key_file=m.read("sshKeyFile", y.string, report, None),
                username_env=m.read("usernameEnv", env, report, None),
                password_env=m.read("passwordEnv", env, report, None))
    keys, pair = set(m.values), {"usernameEnv", "passwordEnv"}
    if "sshKeyFile" in keys and keys & pair:
        report.error(node, field, "give either sshKeyFile or usernameEnv with passwordEnv, not both")
    elif len(keys & pair) == 1:
        (given,), (missing,) = keys & pair, pair - keys
        report.error(node, m.at(missing), f"is required together with {given}")
    elif not m.node.value:
        report.error(node, field, "give sshKeyFile, or usernameEnv and passwordEnv")
    return auth


def _cluster(node: Node, field: str, report: Report) -> Built[Cluster] | None:
    m = y.mapping(node, field, report, _CLUSTER_KEYS, required=("name",))
    if m is None:
        return None
    cluster = Cluster(name=m.read("name", _name, report, ""),
                      kubeconfig=m.read("kubeconfig", y.string, report, None),
                      context=m.read("context", y.string, report, None),
                      labels=m.read("labels", y.string_map, report, {}),
                      vars=m.read("vars", partial(y.string_map, check_key=_var_name), report, {}),
                      interval=m.read("interval", _duration, report, 60.0))
    account = _service_account(m, report, None)
    if account:
        cluster = dataclasses.replace(cluster, service_account=account)
    return (cluster, m) if cluster.name else None


def _service_account(m: Map, report: Report, namespace: str | None) -> str | None:
    """``namespace/name`` from ``serviceAccountName`` and ``serviceAccountNamespace`` (by
    default ``namespace``, the application's)."""
    name = m.read("serviceAccountName", _name, report, None)
    account_ns = m.read("serviceAccountNamespace", _name, report, None) or namespace
    if "serviceAccountNamespace" in m.values and "serviceAccountName" not in m.values:
        report.error(m.values["serviceAccountNamespace"], m.at("serviceAccountNamespace"),
                     "needs serviceAccountName")
    if name and not account_ns:
        report.error(m.values["serviceAccountName"], m.at("serviceAccountName"),
                     "needs serviceAccountNamespace (or, on an application, its namespace)")
        return None
    return f"{account_ns}/{name}" if name else None


def _drift_mode(text: str) -> str | None:
    return None if text in ("correct", "detect") else f"must be correct or detect, not {text!r}"


_IGNORE_KEYS = ("group", "kind", "name", "jsonPointers", "managedFields")


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


def _application(node: Node, field: str, report: Report, sources: Mapping[str, Built[Source]],
                 clusters: Collection[str]) -> Built[Application] | None:
    helm_source = spec_helm.named_source_is_helm(node, sources)
    required = ("name", "source", "clusters") if helm_source else ("name", "source", "path",
                                                                   "clusters")
    m = y.mapping(node, field, report, _APP_KEYS, required=required)
    if m is None:
        return None
    app = Application(
        name=m.read("name", _name, report, ""),
        source=m.read("source", partial(_reference, known=sources, what="source"), report, ""),
        path=m.read("path", partial(y.checked, check=_app_path), report, ""),
        clusters=m.read("clusters", partial(_selector, clusters=clusters), report, Selector()),
        namespace=m.read("namespace", _name, report, None),
        prune=(pruning := m.read("prune", _prune, report, "true")) != "false",
        wait=m.read("wait", y.boolean, report, True),
        timeout=m.read("timeout", _duration, report, 120.0),
        depends_on=m.read("dependsOn", partial(y.names, known=None, what="application"), report, ()),
        suspend=m.read("suspend", y.boolean, report, False),
        adopt=m.read("adopt", y.boolean, report, False),
        allow_remote_bases=m.read("allowRemoteBases", y.boolean, report, False),
        directory=m.read("directory", _directory, report, Directory()),
        allow_empty=m.read("allowEmpty", y.boolean, report, False),
        force=m.read("force", y.boolean, report, False),
        create_namespace=m.read("createNamespace", y.boolean, report, False),
        chart=m.read("chart", spec_helm.chart, report, None),
        helm=m.read("helm", partial(spec_helm.helm, selector=_selector, clusters=clusters),
                    report, Helm()),
        allow_helm_charts=m.read("allowHelmCharts", y.boolean, report, False),
        allowed_namespaces=m.read("allowedNamespaces",
                                  partial(y.names, known=None, what="namespace"), report, ()),
        allowed_kinds=m.read("allowedKinds", _kinds, report, ()),
        denied_kinds=m.read("deniedKinds", _kinds, report, ()),
        on_removal=m.read("onRemoval", partial(y.checked, check=_on_removal), report, "orphan"),
        rollout=m.read("rollout", partial(spec_rollout.rollout, selector=_selector,
                                          durations=_duration, clusters=clusters), report, None),
        drift=m.read("drift", partial(y.checked, check=_drift_mode), report, "correct"),
        ignore_differences=m.read("ignoreDifferences", _ignore_rules, report, ()))
    app = dataclasses.replace(
        app, prune_adopted=pruning == "adopted",
        service_account=_service_account(m, report, app.namespace))
    spec_helm.check_application(m, report, helm_source)
    if app.create_namespace and "namespace" not in m.values:
        report.error(m.values["createNamespace"], m.at("createNamespace"),
                     "needs the application's namespace: set namespace to the one to create")
    return (app, m) if app.name else None


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


def _reference(node: Node, field: str, report: Report, known: Collection[str], what: str) -> str | None:
    name = y.string(node, field, report)
    if name is not None and name not in known:
        report.error(node, field, f"no {what} named {name!r}")
    return name


def _selector(node: Node, field: str, report: Report, clusters: Collection[str]) -> Selector | None:
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


def _check_dependencies(apps: Mapping[str, Built[Application]], report: Report) -> None:
    """Every dependsOn entry names an application, and no chain of them loops."""
    for app, m in apps.values():
        node = m.values.get("dependsOn")
        for i, item in enumerate(node.value if isinstance(node, SequenceNode) else []):
            if item.tag == y.STR and item.value not in apps:
                report.error(item, f"{m.at('dependsOn')}[{i}]", f"no application named {item.value!r}")
    graph = {name: [d for d in app.depends_on if d in apps] for name, (app, _) in apps.items()}
    for cycle in find_cycles(graph):
        m = apps[cycle[0]][1]
        report.error(m.values["dependsOn"], m.at("dependsOn"), f"dependency cycle {' -> '.join(cycle)}")


def find_cycles(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Cycles in a dependency graph, each as ``[a, b, a]``, found in the graph's order.

    Iterative depth-first search, so a long chain of applications cannot exhaust
    the interpreter's stack. Edges to names missing from the graph are ignored.
    """
    state: dict[str, str] = {}
    cycles: list[list[str]] = []
    for root in graph:
        if root in state:
            continue
        path, stack = [root], [iter(graph[root])]
        state[root] = "open"
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                state[path.pop()] = "done"
                stack.pop()
            elif state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state and dep in graph:
                state[dep] = "open"
                path.append(dep)
                stack.append(iter(graph[dep]))
    return cycles


def _warn_empty_selectors(apps: Mapping[str, Built[Application]], clusters: list[Cluster],
                          report: Report) -> None:
    for app, m in apps.values():
        selector = app.clusters
        if selector.names is None and selector.match_labels is None:
            continue  # invalid or missing: already a problem
        if not any(selector.matches(c) for c in clusters):
            report.warn(m.values["clusters"], m.at("clusters"), "selects no cluster")
