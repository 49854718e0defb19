"""The fleet spec's checks on single values: names, URLs, refs, paths, durations.

Every part of the loader (``load`` for sources and clusters, ``application``,
``source``, and through them ``helm``, ``rollout`` and ``notify``) reads these
values the same way, so the rules live here once. A check takes the text and
returns what is wrong with it, or ``None``; ``duration`` and ``dns_name`` are
readers (``(node, field, report)``, see ``shared.spec.yaml``) built on them.
``parse_duration`` is the one pure parser of ``30s``/``5m``/``1h`` spans.
"""

from __future__ import annotations

import re
from functools import partial

from yaml.nodes import Node, ScalarNode

from shared.refnames import ref_name_problem
from shared.semver import parse_range
from shared.spec import yaml as y
from shared.spec.yaml import Report

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COMMIT = re.compile(r"[0-9a-fA-F]{7,40}")
_URLS = (re.compile(r"(https?|ssh)://[^\s/]+(/\S*)?"), re.compile(r"file://\S+"),
         re.compile(r"[\w.-]+@[\w.-]+:\S+"), re.compile(r"/\S+"))
_URL_PASSWORD = re.compile(r"[a-z]+://[^/@\s]*:[^/@\s]*@")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+", re.ASCII)
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)", re.ASCII)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


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


def dns_label(text: str) -> str | None:
    if _DNS_LABEL.fullmatch(text):
        return None
    return (f"{text!r} is not a valid name: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters")


def url_problem(url: str) -> str | None:
    if _URL_PASSWORD.match(url):
        return "must not carry a password: reference one with auth.usernameEnv/passwordEnv"
    if any(p.fullmatch(url) for p in _URLS):
        return None
    return (f"unsupported URL {url!r}: use https://, http://, ssh://, git@host:path, file:// "
            "or an absolute path")


def ref_problem(ref_kind: str, ref: str) -> str | None:
    if ref_kind == "commit":
        return None if _COMMIT.fullmatch(ref) else "must be 7 to 40 hexadecimal characters"
    if ref_kind == "semver":
        try:
            parse_range(ref)
        except ValueError as err:
            return str(err)
        return None
    return ref_name_problem(ref_kind, ref)


def env_name(text: str) -> str | None:
    if _VAR_NAME.fullmatch(text):
        return None
    return "must be the name of an environment variable (letters, digits and '_'), not its value"


def var_name(name: str) -> str | None:
    if name == "cluster_name":
        return "cluster_name is reserved: it is always the cluster's name"
    return None if _VAR_NAME.fullmatch(name) else "variable names must match [A-Za-z_][A-Za-z0-9_]*"


def app_path(path: str) -> str | None:
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


def duration(node: Node, field: str, report: Report) -> float | None:
    if not isinstance(node, ScalarNode) or node.tag in (y.BOOL, y.NULL):
        report.error(node, field, f"must be a duration such as 30s or 5m, not {y.kind(node)}")
        return None
    try:
        return parse_duration(node.value)
    except ValueError as err:
        report.error(node, field, str(err))
        return None


dns_name: y.Reader[str] = partial(y.checked, check=dns_label)
