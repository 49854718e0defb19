"""``oci:`` sources in the fleet spec: read into the model, and every bad value named by
line and field (what the fetch would refuse, refused by ``fleetsync validate`` first)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.spec.load import validate_file
from shared.spec.model import Auth, OciArtifact, Verify
from tests.conftest import ROOT

SPEC = """\
sources:
  - name: config
{source}clusters:
  - name: dev
applications:
  - name: web
    source: config
    path: apps/web
    clusters: {{names: [dev]}}
"""
GOOD = 'oci: {url: oci://reg.example:5000/fleet/config, semver: ">=1.0.0"}'
DIGEST = "sha256:" + "a" * 64


def check(tmp_path: Path, *lines: str) -> tuple[object, list[str], list[str]]:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC.format(source="".join(f"    {line}\n" for line in lines)))
    return validate_file(str(spec))


def test_an_oci_source_is_read(tmp_path: Path) -> None:
    fleet, problems, warnings = check(
        tmp_path, "oci: {url: oci://reg.example:5000/fleet/config, semver: '>=1.0.0',",
        "      layerSelector: {mediaType: application/vnd.cncf.flux.content.v1.tar+gzip,",
        "                      operation: extract}}",
        "auth: {usernameEnv: REG_USER, passwordEnv: REG_PASSWORD}",
        "verify: {cosign: {publicKey: /etc/fleetsync/cosign.pub}}", "interval: 30s")
    assert problems == [] and warnings == []
    source = fleet.sources["config"]  # type: ignore[attr-defined]
    assert (source.url, source.ref_kind, source.ref, source.interval) == (
        "oci://reg.example:5000/fleet/config", "semver", ">=1.0.0", 30.0)
    assert source.oci == OciArtifact("application/vnd.cncf.flux.content.v1.tar+gzip")
    assert source.auth == Auth(username_env="REG_USER", password_env="REG_PASSWORD")
    assert source.verify == Verify("cosign", "/etc/fleetsync/cosign.pub")
    assert source.oci_artifact and not source.helm_repository


@pytest.mark.parametrize("oci, kind, ref", [
    ("{url: oci://r/c, tag: v1.2.3}", "tag", "v1.2.3"),
    (f"{{url: oci://r/c, digest: '{DIGEST}'}}", "digest", DIGEST),
    ("{url: 'oci://[::1]:5000/a/b-c', tag: latest}", "tag", "latest")])
def test_refs_and_hosts(tmp_path: Path, oci: str, kind: str, ref: str) -> None:
    fleet, problems, _ = check(tmp_path, f"oci: {oci}", "insecure: true")
    assert problems == []
    source = fleet.sources["config"]  # type: ignore[attr-defined]
    assert (source.ref_kind, source.ref, source.insecure, source.oci) == (kind, ref, True,
                                                                          OciArtifact())


@pytest.mark.parametrize("lines, problem", [
    (["oci: {url: 'oci://reg/config:v1', tag: v1}"],
     "3: sources[0].oci.url: 'oci://reg/config:v1': a tag or digest does not go in the URL"),
    (["oci: {url: 'oci://reg/Config', tag: v1}"],
     "3: sources[0].oci.url: 'oci://reg/Config': 'Config' is not a repository path"),
    (["oci: {url: 'oci://reg', tag: v1}"], "3: sources[0].oci.url: 'oci://reg': give the "
                                           "repository below the registry"),
    (["oci: {url: 'https://reg/config', tag: v1}"],
     "3: sources[0].oci.url: 'https://reg/config' is not an oci:// URL"),
    (["oci: {url: 'oci://u:p@reg/config', tag: v1}"],
     "3: sources[0].oci.url: 'oci://u:p@reg/config': an oci:// URL has no user"),
    (["oci: {url: oci://reg/c, tag: v1, digest: sha256:00}"],
     "3: sources[0].oci: give exactly one of tag, semver, digest (found tag, digest)"),
    (["oci: {url: oci://reg/c}"], "3: sources[0].oci: give exactly one of tag, semver, digest"),
    (["oci: {url: oci://reg/c, digest: sha256:00}"],
     "3: sources[0].oci.digest: must be sha256: and 64 lower-case hex digits"),
    (["oci: {url: oci://reg/c, tag: -v1}"], "3: sources[0].oci.tag: must be an OCI tag"),
    (["oci: {url: oci://reg/c, semver: banana}"], "3: sources[0].oci.semver: invalid semver range"),
    (["oci: {url: oci://reg/c, tag: v1, layerSelector: {operation: copy}}"],
     "3: sources[0].oci.layerSelector.operation: only extract is supported"),
    (["oci: {url: oci://reg/c, tag: v1, layerSelector: {mediaType: 'not a type'}}"],
     "3: sources[0].oci.layerSelector.mediaType: must be a media type"),
    ([GOOD, "branch: main"], "4: sources[0].branch: does not apply to an oci source"),
    ([GOOD, "url: https://h/x.git"], "4: sources[0].url: does not apply to an oci source"),
    ([GOOD, "insecure: true", "auth: {usernameEnv: U, passwordEnv: P}"],
     "5: sources[0].auth: credentials are never sent over plain HTTP: insecure: true is "
     "refused with auth"),
    ([GOOD, "verify: {ssh: {allowedSigners: /s}}"],
     "4: sources[0].verify: an oci source verifies cosign signatures"),
    ([GOOD, "verify: {cosign: {}}"], "4: sources[0].verify.cosign.publicKey: is required"),
    (["url: https://h/x.git", "branch: main", "verify: {cosign: {publicKey: /k.pub}}"],
     "5: sources[0].verify.cosign: applies to oci sources only"),
])
def test_problems_name_line_and_field(tmp_path: Path, lines: list[str], problem: str) -> None:
    fleet, problems, _ = check(tmp_path, *lines)
    assert fleet is None and len(problems) == 1, problems
    assert f"fleet.yaml:{problem}" in problems[0], problems


def test_fleetsync_validate_rejects_a_bad_oci_source(tmp_path: Path) -> None:
    check(tmp_path, "oci: {url: oci://reg/c, digest: sha256:00}")
    done = subprocess.run([sys.executable, "-m", "scheduler.cli", "validate",
                           "-f", str(tmp_path / "fleet.yaml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert "sources[0].oci.digest: must be sha256:" in done.stdout + done.stderr
