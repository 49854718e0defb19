"""The transport and integrity keys of a fleet spec source: insecure, knownHosts,
sshHostKeyPolicy, verify, and webhook (the secret, by environment variable name,
with which ``fleetsync server`` checks a forge's push notifications).

``load`` reads the rest of a source and hands the mapping here. What is
wrong whatever the host (credentials over plain http, ``insecure`` on an https
URL, ``knownHosts`` on a non-ssh URL, an unknown policy) is a problem; what
depends on the workers' settings or files (a local source while
FLEETSYNC_ALLOW_LOCAL_SOURCES is not set, plain http without ``insecure``) is
a warning, because the fetch refuses it with the same words. That setting comes
in as ``allow_local`` from the loader, which has it from its caller (the CLI
reads it once at its edge); nothing here reads the environment.
An ssh source without ``knownHosts`` is left to the fetch, which refuses it
and says what to set: the spec may be validated where the file is not.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from shared.spec import yaml as y
from shared.git_urls import ALLOW_LOCAL_VAR, transport
from shared.spec.model import Auth, Verify, Webhook
from shared.spec.scalars import env_name
from shared.spec.yaml import Map, Report

SOURCE_KEYS = ("insecure", "knownHosts", "sshHostKeyPolicy", "verify", "webhook", "maxSize")
_SIZE = re.compile(r"([0-9]+)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?")
_UNITS = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
HOST_KEY_POLICIES = ("strict", "accept-new")
_VERIFY_KEYS = {"ssh": "allowedSigners", "gpg": "keyring", "cosign": "publicKey"}
_INLINE_SECRET = ("inline secrets are not allowed: put the webhook secret in an environment "
                  "variable of fleetsync server and name it with secretEnv")


def read_security(m: Map, url: str, auth: Auth, report: Report, *,
                  allow_local: bool) -> dict[str, Any]:
    """The Source keyword arguments for the keys above, after reporting what is wrong.
    ``allow_local``: the workers' ``Settings.allow_local_sources``, from the loader's caller."""
    insecure = m.read("insecure", y.boolean, report, False)
    known_hosts = m.read("knownHosts", y.string, report, None)
    policy = m.read("sshHostKeyPolicy", y.string, report, "strict")
    verify = m.read("verify", _verify, report, None)
    webhook = m.read("webhook", _webhook, report, None)
    max_size = m.read("maxSize", _max_size, report, None)
    if policy not in HOST_KEY_POLICIES:
        report.error(m.values["sshHostKeyPolicy"], m.at("sshHostKeyPolicy"),
                     f"must be one of {', '.join(HOST_KEY_POLICIES)}, not {policy!r}")
        policy = "strict"
    if url and "oci" not in m.values:     # an oci: source's rules: shared.spec.oci
        _check_transport(m, url, auth, report, insecure, allow_local)
    return {"insecure": insecure, "known_hosts": known_hosts, "ssh_host_key_policy": policy,
            "verify": verify, "webhook": webhook, "max_size": max_size}


def _max_size(node: Any, field: str, report: Report) -> int | None:
    """A size such as ``500Mi`` or ``2G`` (bytes when bare)."""
    text = str(getattr(node, "value", ""))
    match = _SIZE.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        report.error(node, field, f"must be a size such as 500Mi or 2Gi, not {text!r}")
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def _check_transport(m: Map, url: str, auth: Auth, report: Report, insecure: bool,
                     allow_local: bool) -> None:
    kind = transport(url).kind
    if kind == "oci" and insecure:          # plain HTTP to the registry, as helm --plain-http
        if auth != Auth():
            report.error(m.values.get("auth", m.node), m.at("auth"),
                         "credentials are never sent over plain HTTP: insecure: true on an "
                         "oci:// source means plain HTTP to the registry; drop insecure (https) "
                         "or the auth")
    elif kind == "http":
        if auth != Auth():
            report.error(m.values.get("auth", m.node), m.at("auth"),
                         "credentials are never sent over plain http://: use https://")
        elif not insecure:
            key = "url" if "url" in m.values else "helmRepository"
            report.warn(m.values[key], m.at(key),
                        "plain http:// is refused unless the source sets insecure: true")
    elif insecure:
        report.error(m.values["insecure"], m.at("insecure"),
                     "only allows plain http:// URLs (it never turns off TLS or host key checks)")
    if kind != "ssh":
        for key in ("knownHosts", "sshHostKeyPolicy"):
            if key in m.values:
                report.error(m.values[key], m.at(key), "applies to ssh sources only")
    if kind == "file" and not allow_local and "url" in m.values:
        report.warn(m.values["url"], m.at("url"),
                    f"a local source (path or file://) is refused unless {ALLOW_LOCAL_VAR}=true "
                    "is set on the workers (it is not set here)")


def _verify(node: Any, field: str, report: Report) -> Verify | None:
    m = y.mapping(node, field, report, tuple(_VERIFY_KEYS))
    if m is None:
        return None
    if not m.values and m.node.value:
        return None             # only unknown keys: already reported
    if len(m.values) != 1:
        report.error(node, field, "give exactly one of ssh: {allowedSigners: FILE}, "
                                  "gpg: {keyring: FILE} or cosign: {publicKey: FILE}")
        return None
    (kind, value), = m.values.items()
    key = _VERIFY_KEYS[kind]
    inner = y.mapping(value, m.at(kind), report, (key,), required=(key,))
    if inner is None or key not in inner.values:
        return None
    path = inner.read(key, y.string, report, None)
    return Verify(kind, path) if path else None


def _webhook(node: Any, field: str, report: Report) -> Webhook | None:
    """``webhook: {secretEnv: NAME}``: the secret is named, never written in the spec."""
    m = y.mapping(node, field, report, ("secretEnv",), required=("secretEnv",),
                  hints={k: _INLINE_SECRET for k in ("secret", "token", "password")})
    if m is None or "secretEnv" not in m.values:
        return None
    name = m.read("secretEnv", partial(y.checked, check=env_name), report, None)
    return Webhook(name) if name else None
