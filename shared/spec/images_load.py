"""Reading ``images:`` (image policies) and a Git source's ``imageUpdates:`` from the spec.

``load`` hands the top-level ``images`` list to ``read_images`` and a source's
``imageUpdates`` mapping to ``read_image_updates``; both report every problem as
``file:line: field: message`` and build the frozen ``shared.spec.images`` model.

What is refused, and why it is refused here rather than at the first scan:

- a repository that is not ``HOST[:PORT]/PATH`` as ``shared.ocirefs`` reads it (no
  scheme, tag, digest or upper case: the distribution spec's names), a duplicate
  policy name (markers name policies), a namespace that is not a DNS label;
- a policy other than one of ``semver`` (a range by the rules of Git semver refs,
  ``shared.semver``), ``numerical`` or ``alphabetical`` (``asc`` or ``desc``), each in
  the short form or Flux's (``{range: ...}``, ``{order: ...}``);
- a ``filterTags.pattern`` that does not compile, an ``extract`` naming a group the
  pattern lacks (``shared.spec.tagfilter``: Go would expand it to nothing, quietly);
- ``insecure`` with auth (never credentials over plain http), an ssh key for a
  registry, inline secrets anywhere;
- on a source: ``imageUpdates`` on a Helm or OCI source (nothing to commit to), a
  ``writeAuth`` that is neither an SSH key file nor a user and password by
  environment variable names, or that does not fit the URL (a key for https, an
  account for ssh, anything for plain ``http://``), a ``signingKey`` other than
  ``ssh`` or ``gpg``, a push branch git would refuse (``shared.refnames``), a
  ``messageTemplate`` with a ``{placeholder}`` other than ``changes``, ``count`` and
  ``source`` (a ``str.format`` field such as ``{x.__class__}`` would read attributes),
  and a source that follows a tag, semver range or commit without ``push.branch``.

Without ``writeAuth`` the source's own ``auth`` is the account that pushes, so
``ImageUpdates.write_auth`` is always the credential to use.
"""

from __future__ import annotations

import re
import string
from functools import partial
from typing import Callable

from yaml.nodes import Node, ScalarNode

from shared.git_urls import transport
from shared.ocirefs import OciUrlError, parse_oci_url
from shared.refnames import ref_name_problem
from shared.spec import yaml as y
from shared.spec.auth import Auth
from shared.spec.model import HELM_REPOSITORY
from shared.spec.images import ImagePolicy, ImageUpdates, Signing, TagFilter
from shared.spec.scalars import dns_name, duration, ref_problem
from shared.spec.tagfilter import missing
from shared.spec.yaml import Map, Report

AuthReader = Callable[[Node, str, Report], "Auth | None"]

POLICY_KEYS = ("name", "namespace", "repository", "policy", "filterTags", "interval", "auth",
               "insecure")
UPDATE_KEYS = ("path", "author", "messageTemplate", "signingKey", "push", "writeAuth",
               "interval")
KINDS = ("semver", "numerical", "alphabetical")
ORDERS = ("asc", "desc")
PLACEHOLDERS = ("changes", "count", "source")
_SECRET = ("inline secrets are not allowed: put the value in an environment variable and "
           "name it in auth (usernameEnv/passwordEnv)")
_HINTS = {k: _SECRET for k in ("password", "token", "secret", "username", "user")}


# -- images: ------------------------------------------------------------------------------

def read_images(node: Node, field: str, report: Report, *,
                auth: AuthReader) -> tuple[ImagePolicy, ...] | None:
    """Every valid policy of the ``images`` list (names unique), in spec order."""
    if isinstance(node, ScalarNode) and node.tag == y.NULL:
        return ()
    out: dict[str, tuple[ImagePolicy, Node]] = {}
    for i, item in enumerate(y.sequence(node, field, report) or []):
        built = _image(item, f"{field}[{i}]", report, auth)
        if built is None:
            continue
        policy, name_node = built
        if policy.name in out:
            first = y.line(out[policy.name][1])
            report.error(name_node, f"{field}[{i}].name",
                         f"duplicate image policy name {policy.name!r} (first at line {first})")
        else:
            out[policy.name] = built
    return tuple(policy for policy, _ in out.values())


def _image(node: Node, field: str, report: Report,
           auth_reader: AuthReader) -> tuple[ImagePolicy, Node] | None:
    m = y.mapping(node, field, report, POLICY_KEYS, required=("name", "repository", "policy"),
                  hints=_HINTS)
    if m is None:
        return None
    name = m.read("name", dns_name, report, "")
    namespace = m.read("namespace", dns_name, report, None)
    repository = m.read("repository", partial(y.checked, check=repository_problem), report, "")
    kind, value = m.read("policy", _policy, report, ("", ""))
    tag_filter = m.read("filterTags", _filter, report, None)
    interval = m.read("interval", duration, report, 300.0)
    auth = m.read("auth", auth_reader, report, Auth())
    insecure = m.read("insecure", y.boolean, report, False)
    if insecure and auth != Auth():
        report.error(m.values["auth"], m.at("auth"), "credentials are never sent over plain "
                     "HTTP: insecure: true is refused with auth")
    if auth.ssh_key_file:
        report.error(m.values["auth"], m.at("auth.sshKeyFile"),
                     "registries take usernameEnv and passwordEnv, not an ssh key")
    if not (name and repository and kind):
        return None
    policy = ImagePolicy(name=name, repository=repository, kind=kind, value=value,
                         namespace=namespace, filter=tag_filter, interval=interval, auth=auth,
                         insecure=insecure, line=y.line(node))
    return policy, m.values["name"]


def repository_problem(text: str) -> str | None:
    """Why ``text`` is not ``HOST[:PORT]/PATH`` of an image repository, or None."""
    example = "HOST[:PORT]/PATH, e.g. ghcr.io/org/app"
    if "://" in text:
        return f"{text!r}: give the repository without a scheme ({example})"
    if "@" in text:
        return f"{text!r}: give the repository without a digest (the policy picks the tag)"
    host, _, path = text.partition("/")
    if ":" in path:
        return f"{text!r}: give the repository without a tag (the policy picks the tag)"
    if not path:
        return f"{text!r}: give the registry host and the repository below it ({example})"
    if path != path.lower():
        return f"{text!r}: repository paths are lower case (the distribution spec's names)"
    try:
        parse_oci_url(f"oci://{host}/{path}")
    except OciUrlError as exc:
        return str(exc).replace(f"'oci://{host}/{path}'", repr(text))
    return None


def _policy(node: Node, field: str, report: Report) -> tuple[str, str] | None:
    """(kind, value) of ``{semver: RANGE}``, ``{numerical: asc}``, ... or Flux's forms."""
    m = y.mapping(node, field, report, KINDS)
    if m is None:
        return None
    if len(m.values) != 1:
        if m.values or not m.node.value:
            report.error(node, field, "give exactly one of semver, numerical, alphabetical")
        return None
    (kind, value), = m.values.items()
    inner = "range" if kind == "semver" else "order"
    where: Node = value
    if isinstance(value, ScalarNode):
        text = y.string(value, m.at(kind), report)
        at = m.at(kind)
    else:
        flux = y.mapping(value, m.at(kind), report, (inner,), required=(inner,) if kind ==
                         "semver" else ())
        if flux is None or (kind == "semver" and inner not in flux.values):
            return None
        where = flux.values.get(inner, value)
        at = flux.at(inner)
        text = flux.read(inner, y.string, report, "asc")
    if text is None:
        return None
    complaint = (ref_problem("semver", text) if kind == "semver" else
                 None if text in ORDERS else f"must be asc or desc, not {text!r}")
    if complaint:
        report.error(where, at, complaint)
        return None
    return kind, text


def _filter(node: Node, field: str, report: Report) -> TagFilter | None:
    m = y.mapping(node, field, report, ("pattern", "extract"), required=("pattern",))
    if m is None or "pattern" not in m.values:
        return None
    pattern = m.read("pattern", y.string, report, "")
    extract = m.read("extract", partial(y.string, allow_empty=True), report, "")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        report.error(m.values["pattern"], m.at("pattern"),
                     f"{pattern!r} is not a regular expression: {exc}")
        return None
    lacking = missing(extract, compiled)
    if lacking:
        groups = ", ".join(list(compiled.groupindex) or [str(n) for n in
                                                         range(1, compiled.groups + 1)])
        report.error(m.values["extract"], m.at("extract"),
                     f"names group {lacking[0]!r}, which the pattern does not have "
                     f"(its groups: {groups or 'none'})")
        return None
    return TagFilter(pattern, extract) if pattern else None


# -- a source's imageUpdates: --------------------------------------------------------------

def read_image_updates(node: Node, field: str, report: Report, *, url: str, ref_kind: str,
                       auth: Auth, auth_reader: AuthReader) -> ImageUpdates | None:
    """A Git source's ``imageUpdates`` (``url``, ``ref_kind``, ``auth``: the source's)."""
    m = y.mapping(node, field, report, UPDATE_KEYS, hints=_HINTS)
    if m is None:
        return None
    name, email = m.read("author", _author, report, ("fleetsync", "fleetsync@localhost"))
    push = m.read("push", _push, report, None)
    if push is None and ref_kind in ("tag", "semver", "commit") and "push" not in m.values:
        report.error(node, m.at("push.branch"), f"is required: the source follows a "
                     f"{ref_kind}, and image updates are pushed to a branch")
    write_auth = m.read("writeAuth", auth_reader, report, None)
    if write_auth is not None:
        _check_write_auth(m, url, write_auth, report)
    return ImageUpdates(
        path=m.read("path", partial(y.checked, check=_path_problem), report, ".").rstrip("/")
        or ".",
        author_name=name, author_email=email,
        message_template=m.read("messageTemplate", partial(y.checked, check=template_problem),
                                report, ""),
        signing=m.read("signingKey", _signing, report, None), push_branch=push,
        write_auth=auth if write_auth is None else write_auth,
        interval=m.read("interval", duration, report, 300.0), line=y.line(node))


def source_updates(m: Map, url: str, ref_kind: str, auth: Auth, auth_reader: AuthReader,
                   report: Report) -> ImageUpdates | None:
    """A source's ``imageUpdates`` if it has any (refused on a Helm repository)."""
    if ref_kind == HELM_REPOSITORY:
        refuse_image_updates(m, "a helmRepository", report)
        return None
    read = partial(read_image_updates, url=url, ref_kind=ref_kind, auth=auth,
                   auth_reader=auth_reader)
    return m.read("imageUpdates", read, report, None)


def refuse_image_updates(m: Map, what: str, report: Report) -> None:
    """``imageUpdates`` on a source that is not a Git repository."""
    if "imageUpdates" in m.values:
        report.error(m.values["imageUpdates"], m.at("imageUpdates"),
                     f"applies to Git sources only ({what} source has no repository to "
                     "commit to)")


def _check_write_auth(m: Map, url: str, auth: Auth, report: Report) -> None:
    node, field, kind = m.values["writeAuth"], m.at("writeAuth"), transport(url).kind
    if auth.token_realm:
        report.error(node, f"{field}.tokenRealm", "applies to oci:// sources only")
    elif kind == "http":
        report.error(node, field, "credentials are never sent over plain http://: use "
                     "https:// or ssh to push image updates")
    elif auth.ssh_key_file and kind != "ssh":
        report.error(node, f"{field}.sshKeyFile", f"is a key for ssh URLs; {url!r} is {kind}: "
                     "give usernameEnv and passwordEnv")
    elif auth.username_env and kind == "ssh":
        report.error(node, field, f"{url!r} is an ssh URL: give sshKeyFile, not a user "
                     "and password")


def _author(node: Node, field: str, report: Report) -> tuple[str, str] | None:
    m = y.mapping(node, field, report, ("name", "email"), required=("name", "email"))
    if m is None:
        return None
    name = m.read("name", partial(y.checked, check=_one_line), report, "")
    email = m.read("email", partial(y.checked, check=_email_problem), report, "")
    return (name, email) if name and email else None


def _push(node: Node, field: str, report: Report) -> str | None:
    m = y.mapping(node, field, report, ("branch",), required=("branch",))
    if m is None:
        return None
    return m.read("branch", partial(y.checked, check=partial(ref_name_problem, "branch")),
                  report, None)


def _signing(node: Node, field: str, report: Report) -> Signing | None:
    m = y.mapping(node, field, report, ("ssh", "gpg"))
    if m is None:
        return None
    if len(m.values) != 1:
        if m.values or not m.node.value:
            report.error(node, field, "give exactly one of ssh: FILE or gpg: FILE")
        return None
    (kind, _), = m.values.items()
    key_file = m.read(kind, y.string, report, None)
    return Signing(kind, key_file) if key_file else None


def template_problem(text: str) -> str | None:
    """Why ``text`` is not a commit message template, or None."""
    try:
        fields = [name for _, name, spec, conv in string.Formatter().parse(text)
                  if name is not None or spec or conv]
    except ValueError as exc:
        return f"is not a template: {exc} (write {{{{ and }}}} for literal braces)"
    for name in fields:
        if name not in PLACEHOLDERS:
            known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            return f"unknown placeholder {{{name}}}: use {known}"
    return None


def _path_problem(text: str) -> str | None:
    if text.startswith("/"):
        return "must be relative to the root of the repository, not absolute"
    if ".." in text.split("/"):
        return "must not contain '..' segments"
    return None


def _one_line(text: str) -> str | None:
    return "must be one line" if any(ch in text for ch in "\r\n\0<>") else None


def _email_problem(text: str) -> str | None:
    if "@" not in text or any(ch.isspace() or ch in "<>\0" for ch in text):
        return f"{text!r} is not an email address"
    return None
