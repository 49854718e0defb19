"""``oci:`` sources: an OCI artifact of manifests (Flux's ``OCIRepository``).

    - name: config
      oci: {url: oci://registry.example.com/fleet-config, semver: ">=1.0.0",
            layerSelector: {mediaType: application/vnd.cncf.flux.content.v1.tar+gzip}}
      auth: {usernameEnv: REG_USER, passwordEnv: REG_PASSWORD}
      verify: {cosign: {publicKey: /etc/fleetsync/cosign.pub}}

``read_artifact`` reads the ``oci`` mapping: the repository URL (``oci://host[:port]/
path``, read by ``shared.ocirefs`` as the fetch reads it: lower-case as the distribution
spec names repositories, no tag, digest or credentials in it), exactly one of ``tag``, ``semver`` (a range over the tags, the
same rules as Git semver refs) or ``digest`` (``sha256:`` and 64 hex digits: pinned,
new tags are ignored), and ``layerSelector`` (a ``mediaType``; ``operation`` only
``extract``). ``check_artifact_source`` reports what such a source may not have
beside it (a Git URL or ref, ``helmRepository``, ssh keys, commit signature
checks) and the transport rules as the fetch applies them: ``insecure: true``
means plain HTTP to the registry and is refused with credentials; ``verify`` takes
``cosign`` only, and ``cosign`` only here.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from shared.ocirefs import DIGEST, TAG, OciUrlError, parse_oci_url
from shared.spec import yaml as y
from shared.spec.model import Auth, OciArtifact, Verify
from shared.spec.scalars import ref_problem
from shared.spec.yaml import Map, Report

OCI_KEYS = ("url", "tag", "semver", "digest", "layerSelector")
REF_KINDS = ("tag", "semver", "digest")
LAYER_KEYS = ("mediaType", "operation")
NOT_BESIDE = ("url", "helmRepository", "branch", "tag", "semver", "commit", "defaultBranch",
              "knownHosts", "sshHostKeyPolicy")
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an OCI artifact repository URL, or None (``shared.ocirefs``'
    grammar, which the fetch reads too)."""
    try:
        parsed = parse_oci_url(url)
    except OciUrlError as exc:
        return str(exc)
    if not parsed.path:
        return f"{url!r}: give the repository below the registry (oci://host[:port]/path)"
    return None


def _ref_problem(kind: str, ref: str) -> str | None:
    if kind == "digest":
        return None if DIGEST.fullmatch(ref) else "must be sha256: and 64 lower-case hex digits"
    if kind == "tag":
        return None if TAG.fullmatch(ref) else ("must be an OCI tag (letters, digits, '_', "
                                                 "'.', '-'; at most 128; not starting with . or -)")
    return ref_problem("semver", ref)


def read_artifact(node: Any, field: str, report: Report) -> tuple[str, str, str, OciArtifact] | None:
    """(url, ref kind, ref, layer selection) of an ``oci`` mapping, or None when invalid."""
    m = y.mapping(node, field, report, OCI_KEYS, required=("url",))
    if m is None:
        return None
    url = m.read("url", partial(y.checked, check=url_problem), report, "")
    layer = m.read("layerSelector", _layer_selector, report, OciArtifact())
    kinds = [k for k in REF_KINDS if k in m.values]
    if len(kinds) != 1:
        found = f" (found {', '.join(kinds)})" if kinds else ""
        report.error(m.node, field, f"give exactly one of tag, semver, digest{found}")
        return None
    kind = kinds[0]
    ref = m.read(kind, partial(y.checked, check=partial(_ref_problem, kind)), report, "")
    return (url, kind, ref, layer) if url and ref else None


def _layer_selector(node: Any, field: str, report: Report) -> OciArtifact | None:
    m = y.mapping(node, field, report, LAYER_KEYS)
    if m is None:
        return None
    media_type = m.read("mediaType", y.string, report, "") or ""
    if media_type and not _MEDIA_TYPE.fullmatch(media_type):
        report.error(m.values["mediaType"], m.at("mediaType"),
                     f"must be a media type such as application/vnd.cncf.flux.content.v1.tar+gzip, "
                     f"not {media_type!r}")
    operation = m.read("operation", y.string, report, "extract") or "extract"
    if operation != "extract":
        report.error(m.values["operation"], m.at("operation"),
                     f"only extract is supported (the layer is a tar of manifests), not {operation!r}")
    return OciArtifact(media_type, "extract")


def check_artifact_source(m: Map, auth: Auth, insecure: bool, verify: Verify | None,
                          report: Report) -> None:
    """What an ``oci`` source may not have beside it, and its transport rules."""
    for key in NOT_BESIDE:
        if key in m.values:
            report.error(m.values[key], m.at(key), "does not apply to an oci source (its "
                         "repository and tag, semver or digest go inside oci:)")
    if insecure and auth != Auth():
        report.error(m.values["auth"], m.at("auth"), "credentials are never sent over plain "
                     "HTTP: insecure: true is refused with auth")
    if auth.ssh_key_file:
        report.error(m.values["auth"], m.at("auth.sshKeyFile"),
                     "registries take usernameEnv and passwordEnv, not an ssh key")
    if verify is not None and verify.kind != "cosign":
        report.error(m.values["verify"], m.at("verify"),
                     f"an oci source verifies cosign signatures: give cosign: {{publicKey: FILE}}, "
                     f"not {verify.kind}")
