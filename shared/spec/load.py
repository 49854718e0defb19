"""Read fleet.yaml into a validated ``Fleet``, naming the line of every problem.

Nothing may be scheduled from a file that does not validate, and an operator
fixing it wants every problem at once, each with its place. So the file is
composed (not constructed) with PyYAML's safe loader, which keeps each node's
start mark, and the node tree is walked once to build the model while problems
are collected as ``file:line: field.path: message``:

    size check -> compose (anchors/aliases refused) -> sources, clusters
    -> applications (source and cluster references) -> dependsOn (names, cycles)
    -> warnings (selectors that match no cluster) -> windows -> Fleet or SpecError

The generic node readers live in ``yaml``, the checks on single values in
``scalars``; this module walks the file and reads sources and clusters, an
application is read by ``application`` and the dependsOn graph checked by
``dependencies``; a source's transport keys go to ``source``, the change
windows to ``windows``. A reader reports
what is wrong and returns ``None``; the builder falls back to a default so the
walk goes on, and a fleet is returned only when no problem was found.

What depends on the workers' settings comes in as an argument, never from the
environment: ``allow_local`` (``Settings.allow_local_sources``) is passed by the
caller down to ``source.read_security``, which warns about a local source only
when it is false (the default: the CLI's ``validate`` passes the setting).
"""

from __future__ import annotations

import dataclasses
import os
from functools import partial
from typing import Callable, Mapping
from urllib.parse import urlsplit

from yaml.nodes import Node, ScalarNode

from shared.spec import yaml as y
from shared.errors import SpecError
from shared.spec import health as spec_health
from shared.spec import helm as spec_helm
from shared.spec import oci as spec_oci
from shared.spec.application import Built, N, application, service_account
from shared.spec.application import selector as spec_selector
from shared.spec.dependencies import check_dependencies
from shared.spec import images_load
from shared.spec.model import DEFAULT_BRANCH, DEFAULT_BRANCH_KEY, HELM_REPOSITORY, Application
from shared.spec.model import Auth, Cluster, Fleet, ImagePolicy, OciArtifact, Source
from shared.spec.model import HealthCheck, HealthSettings, Notifications, Window
from shared.spec.notify import read_notifications
from shared.spec.scalars import dns_name, duration, env_name, ref_problem, url_problem, var_name
from shared.spec.source import SOURCE_KEYS, read_security
from shared.spec.windows import read_windows
from shared.spec.yaml import Map, Report

MAX_BYTES = 8 * 1024 * 1024        # a spec of 10,000 applications is about 1 MB

_TOP_KEYS = ("sources", "clusters", "applications", "notifications", "healthChecks",
             "healthLua", "health", "windows", "images")
_REF_KINDS = ("branch", "tag", "semver", "commit")
_SOURCE_KEYS = ("name", "url", "helmRepository", "oci", *_REF_KINDS, DEFAULT_BRANCH_KEY, "interval",
                "auth", "imageUpdates", *SOURCE_KEYS)
_AUTH_KEYS = ("sshKeyFile", "usernameEnv", "passwordEnv", "tokenRealm")
_CLUSTER_KEYS = ("name", "kubeconfig", "context", "labels", "vars", "interval",
                 "serviceAccountName", "serviceAccountNamespace")
_SECRET = ("inline secrets are not allowed: put the value in an environment variable "
           "and reference it with usernameEnv/passwordEnv, or give sshKeyFile")
_SECRET_HINTS = {k: _SECRET for k in ("password", "token", "secret", "username", "user",
                                      "privateKey", "sshKey", "apiKey")}


def load_fleet(path: str, *, allow_local: bool = False) -> Fleet:
    """Parse and validate ``path``; raise ``SpecError`` listing every problem."""
    return load(path, allow_local=allow_local)


def load(path: str, *, allow_local: bool = False) -> Fleet:
    """Parse and validate ``path``; raise ``SpecError`` listing every problem."""
    fleet, problems, _ = validate_file(path, allow_local=allow_local)
    if problems or fleet is None:
        raise SpecError(problems)
    return fleet


def validate_file(path: str, *, allow_local: bool = False
                  ) -> tuple[Fleet | None, list[str], list[str]]:
    """(fleet or None, problems, warnings); the fleet is None whenever a problem was found.
    ``allow_local``: the workers' ``Settings.allow_local_sources``; without it a local
    source is warned about (the workers would refuse it)."""
    report = Report(path)
    root = y.compose(path, report, MAX_BYTES)
    fleet = _fleet(root, report, allow_local) if root is not None else None
    problems = report.problems()
    return (None if problems else fleet), problems, report.warnings()


# -- the model ----------------------------------------------------------------

def _fleet(root: Node, report: Report, allow_local: bool) -> Fleet | None:
    top = y.mapping(root, "", report, _TOP_KEYS)
    if top is None:
        return None
    sources = _named(top, "sources", "source", partial(_source, allow_local=allow_local), report)
    clusters = _named(top, "clusters", "cluster", _cluster, report)
    build_app = partial(application, sources=sources, clusters=clusters)
    apps = _named(top, "applications", "application", build_app, report)
    if apps and "sources" not in top.values:
        report.error(root, "sources", "is required when applications are listed")
    check_dependencies(apps, report)
    _warn_empty_selectors(apps, [c for c, _ in clusters.values()], report)
    notify = partial(read_notifications, applications=apps, durations=duration)
    notifications = top.read("notifications", notify, report, Notifications())
    health = _health(top, report)
    read = partial(read_windows, selector=spec_selector, applications=list(apps),
                   clusters=[c for c, _ in clusters.values()])
    no_windows: tuple[Window, ...] = ()
    windows = top.read("windows", read, report, no_windows)
    no_images: tuple[ImagePolicy, ...] = ()
    images = top.read("images", partial(images_load.read_images, auth=_auth), report, no_images)
    return Fleet(sources={k: v for k, (v, _) in sources.items()},
                 clusters={k: v for k, (v, _) in clusters.items()},
                 applications={k: v for k, (v, _) in apps.items()},
                 path=report.file, warnings=tuple(report.warnings()),
                 notifications=notifications, health=health, windows=windows, images=images)


def _health(top: Map, report: Report) -> HealthSettings:
    """``health``, ``healthChecks`` and ``healthLua`` (paths relative to the spec's folder)."""
    settings = top.read("health", spec_health.settings, report, HealthSettings())
    no_checks: tuple[HealthCheck, ...] = ()
    checks = top.read("healthChecks", spec_health.checks, report, no_checks)
    no_lua: tuple[str, tuple[tuple[str, str], ...]] = ("", ())
    lua_dir, scripts = top.read(
        "healthLua", partial(spec_health.lua, base_dir=os.path.dirname(os.path.abspath(
            report.file))), report, no_lua)
    return dataclasses.replace(settings, checks=checks, lua_dir=lua_dir, lua_scripts=scripts)


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


def _source(node: Node, field: str, report: Report, *, allow_local: bool) -> Built[Source] | None:
    m = y.mapping(node, field, report, _SOURCE_KEYS, required=("name",))
    if m is None:
        return None
    name = m.read("name", dns_name, report, "")
    if "oci" in m.values:
        return _artifact_source(m, name, report)
    if "helmRepository" in m.values:      # a Helm chart repository: no Git ref
        spec_helm.check_repository_source(m, report)
        url = m.read("helmRepository", partial(y.checked, check=spec_helm.repository_problem),
                     report, "")
        ref_kind, ref = HELM_REPOSITORY, ""
    else:
        if "url" not in m.values:
            report.error(node, m.at("url"), "is required")
        url = m.read("url", partial(y.checked, check=url_problem), report, "")
        ref_kind, ref = _ref(m, report)
    interval = m.read("interval", duration, report, 60.0)
    auth = m.read("auth", _auth, report, Auth())
    security = read_security(m, url, auth, report, allow_local=allow_local)
    if security["verify"] is not None and security["verify"].kind == "cosign":
        report.error(m.values["verify"], m.at("verify.cosign"), "applies to oci sources only "
                     "(a Git source verifies commit signatures: ssh or gpg)")
    if auth.token_realm and not url.lower().startswith("oci://"):
        report.error(m.values["auth"], m.at("auth.tokenRealm"), "applies to oci:// sources only")
    updates = images_load.source_updates(m, url, ref_kind, auth, _auth, report)
    return (Source(name, url, ref_kind, ref, interval, auth, **security, image_updates=updates),
            m) if name else None


def _artifact_source(m: Map, name: str, report: Report) -> Built[Source] | None:
    """An OCI artifact of manifests (``shared.spec.oci``): a digest is its revision."""
    read = m.read("oci", spec_oci.read_artifact, report, None)
    interval = m.read("interval", duration, report, 60.0)
    auth = m.read("auth", _auth, report, Auth())
    security = read_security(m, "", auth, report, allow_local=False)
    spec_oci.check_artifact_source(m, auth, security["insecure"], security["verify"], report)
    images_load.refuse_image_updates(m, "an oci", report)
    if not name:
        return None
    url, ref_kind, ref, layer = read or ("", "tag", "", OciArtifact())
    return Source(name, url, ref_kind, ref, interval, auth, oci=layer, **security), m


def _ref(m: Map, report: Report) -> tuple[str, str]:
    kinds = [k for k in _REF_KINDS if k in m.values]
    if m.read(DEFAULT_BRANCH_KEY, y.boolean, report, False):
        if kinds:       # the remote's default branch, resolved at each fetch: no other ref
            report.error(m.values[DEFAULT_BRANCH_KEY], m.at(DEFAULT_BRANCH_KEY),
                         "follows the remote's default branch: give it without "
                         f"branch, tag, semver or commit (found {', '.join(kinds)})")
            return "", ""
        return DEFAULT_BRANCH, ""
    if len(kinds) != 1:
        found = f" (found {', '.join(kinds)})" if kinds else ""
        report.error(m.node, m.field, f"give exactly one of branch, tag, semver, commit{found}")
        return "", ""
    ref_kind = kinds[0]
    check = partial(ref_problem, ref_kind)
    return ref_kind, m.read(ref_kind, partial(y.checked, check=check), report, "")


def _auth(node: Node, field: str, report: Report) -> Auth | None:
    m = y.mapping(node, field, report, _AUTH_KEYS, hints=_SECRET_HINTS)
    if m is None:
        return None
    env = partial(y.checked, check=env_name)
    auth = Auth(ssh_key_file=m.read("sshKeyFile", y.string, report, None),
                username_env=m.read("usernameEnv", env, report, None),
                password_env=m.read("passwordEnv", env, report, None),
                token_realm=m.read("tokenRealm", partial(y.checked, check=_token_realm), report,
                                   None))
    keys, pair = set(m.values), {"usernameEnv", "passwordEnv"}
    if "tokenRealm" in keys and not keys & pair:
        report.error(m.values["tokenRealm"], m.at("tokenRealm"),
                     "is the token service trusted with usernameEnv/passwordEnv: give those too")
        keys.discard("tokenRealm")
    if "sshKeyFile" in keys and keys & pair:
        report.error(node, field, "give either sshKeyFile or usernameEnv with passwordEnv, not both")
    elif len(keys & pair) == 1:
        (given,), (missing,) = keys & pair, pair - keys
        report.error(node, m.at(missing), f"is required together with {given}")
    elif not m.node.value:
        report.error(node, field, "give sshKeyFile, or usernameEnv and passwordEnv")
    return auth


def _token_realm(text: str) -> str | None:
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        return f"{text!r} is not an https:// URL of a token service (https://HOST[:PORT])"
    return None


def _cluster(node: Node, field: str, report: Report) -> Built[Cluster] | None:
    m = y.mapping(node, field, report, _CLUSTER_KEYS, required=("name",))
    if m is None:
        return None
    cluster = Cluster(name=m.read("name", dns_name, report, ""),
                      kubeconfig=m.read("kubeconfig", y.string, report, None),
                      context=m.read("context", y.string, report, None),
                      labels=m.read("labels", y.string_map, report, {}),
                      vars=m.read("vars", partial(y.string_map, check_key=var_name), report, {}),
                      interval=m.read("interval", duration, report, 60.0))
    account = service_account(m, report, None)
    if account:
        cluster = dataclasses.replace(cluster, service_account=account)
    return (cluster, m) if cluster.name else None


def _warn_empty_selectors(apps: Mapping[str, Built[Application]], clusters: list[Cluster],
                          report: Report) -> None:
    for app, m in apps.values():
        selector = app.clusters
        if selector.names is None and selector.match_labels is None:
            continue  # invalid or missing: already a problem
        if not any(selector.matches(c) for c in clusters):
            report.warn(m.values["clusters"], m.at("clusters"), "selects no cluster")
