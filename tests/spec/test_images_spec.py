"""``images:`` and a source's ``imageUpdates:`` in the fleet spec: read into the model, and
every bad value named by file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.spec.auth import Auth
from shared.spec.images import ImagePolicy, ImageUpdates, Signing, TagFilter
from shared.spec.load import validate_file
from tests.conftest import ROOT

SPEC = """\
images:
{images}sources:
  - name: fleet
{source}clusters:
  - name: dev
applications:
  - name: web
    source: fleet
    path: apps/web
    clusters: {{names: [dev]}}
"""
IMAGE = ["- name: podinfo", "  repository: registry.example.com/apps/podinfo",
         "  policy: {semver: '^1'}"]
GIT = ["url: https://git.example.com/fleet.git", "branch: main"]


def check(tmp_path: Path, images: list[str] | None = None, source: list[str] | None = None
          ) -> tuple[object, list[str], list[str]]:
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC.format(
        images="".join(f"  {line}\n" for line in (IMAGE if images is None else images)),
        source="".join(f"    {line}\n" for line in (GIT if source is None else source))))
    return validate_file(str(spec))


def test_policies_and_updates_are_read(tmp_path: Path) -> None:
    fleet, problems, warnings = check(tmp_path, [
        "- name: podinfo", "  namespace: flux-system",
        "  repository: registry.example.com:5000/apps/podinfo",
        "  policy: {semver: {range: '>=1.0.0 <2.0.0'}}",
        "  filterTags: {pattern: '^main-[a-f0-9]+-(?P<ts>[0-9]+)$', extract: '$ts'}",
        "  interval: 10m", "  auth: {usernameEnv: REG_USER, passwordEnv: REG_PASSWORD}",
        "- name: web", "  repository: ghcr.io/org/web", "  policy: {numerical: {order: desc}}",
        "- name: calver", "  repository: ghcr.io/org/calver", "  policy: {alphabetical: asc}",
        "  insecure: true",
    ], [*GIT, "imageUpdates:", "  path: clusters/",
        "  author: {name: fleetsync, email: fleetsync@example.com}",
        "  messageTemplate: \"chore: images\\n\\n{changes} ({count} in {source})\"",
        "  signingKey: {gpg: /etc/fleetsync/signing.asc}", "  push: {branch: image-updates}",
        "  writeAuth: {usernameEnv: GIT_USER, passwordEnv: GIT_TOKEN}", "  interval: 2m"])
    assert problems == [] and warnings == []
    podinfo, web, calver = fleet.images  # type: ignore[attr-defined]
    assert podinfo == ImagePolicy(
        "podinfo", "registry.example.com:5000/apps/podinfo", "semver", ">=1.0.0 <2.0.0",
        namespace="flux-system", filter=TagFilter("^main-[a-f0-9]+-(?P<ts>[0-9]+)$", "$ts"),
        interval=600.0, auth=Auth(username_env="REG_USER", password_env="REG_PASSWORD"), line=2)
    assert (web.kind, web.value, web.filter) == ("numerical", "desc", None)
    assert (calver.kind, calver.value, calver.insecure) == ("alphabetical", "asc", True)
    updates = fleet.sources["fleet"].image_updates  # type: ignore[attr-defined]
    assert updates == ImageUpdates(
        path="clusters", author_name="fleetsync", author_email="fleetsync@example.com",
        message_template="chore: images\n\n{changes} ({count} in {source})",
        signing=Signing("gpg", "/etc/fleetsync/signing.asc"), push_branch="image-updates",
        write_auth=Auth(username_env="GIT_USER", password_env="GIT_TOKEN"), interval=120.0,
        line=21)


def test_defaults_and_the_source_auth_pushes_without_write_auth(tmp_path: Path) -> None:
    fleet, problems, _ = check(tmp_path, IMAGE, [
        "url: ssh://git@git.example.com/fleet.git", "branch: main",
        "knownHosts: /etc/fleetsync/known_hosts", "auth: {sshKeyFile: /etc/fleetsync/key}",
        "imageUpdates: {}"])
    assert problems == []
    (policy,) = fleet.images  # type: ignore[attr-defined]
    assert (policy.interval, policy.auth, policy.namespace) == (300.0, Auth(), None)
    updates = fleet.sources["fleet"].image_updates  # type: ignore[attr-defined]
    assert updates.write_auth == Auth(ssh_key_file="/etc/fleetsync/key")
    assert (updates.path, updates.push_branch, updates.signing) == (".", None, None)
    fleet, problems, _ = check(tmp_path, [], GIT)
    assert problems == [] and fleet.images == ()  # type: ignore[attr-defined]
    assert fleet.sources["fleet"].image_updates is None  # type: ignore[attr-defined]


BAD_IMAGES = [
    ([*IMAGE, *IMAGE], 5, "images[1].name: duplicate image policy name 'podinfo' (first at line 2)"),
    (["- name: Podinfo", *IMAGE[1:]], 2, "images[0].name: 'Podinfo' is not a valid name"),
    ([*IMAGE, "  namespace: Flux_System"], 5, "images[0].namespace: 'Flux_System' is not a valid"),
    ([IMAGE[0], "  repository: https://registry.example.com/apps/podinfo", IMAGE[2]], 3,
     "images[0].repository: 'https://registry.example.com/apps/podinfo': give the repository "
     "without a scheme"),
    ([IMAGE[0], "  repository: registry.example.com/apps/podinfo:1.0", IMAGE[2]], 3,
     "without a tag"),
    ([IMAGE[0], "  repository: 'registry.example.com/apps/podinfo@sha256:abc'", IMAGE[2]], 3,
     "without a digest"),
    ([IMAGE[0], "  repository: registry.example.com/Apps/Podinfo", IMAGE[2]], 3,
     "repository paths are lower case"),
    ([IMAGE[0], "  repository: podinfo", IMAGE[2]], 3, "give the registry host and the repository"),
    ([IMAGE[0], "  repository: registry.example.com/apps//podinfo", IMAGE[2]], 3,
     "is not a repository path"),
    ([*IMAGE[:2], "  policy: {semver: '^1.x.y'}"], 4,
     "images[0].policy.semver: invalid semver range '^1.x.y'"),
    ([*IMAGE[:2], "  policy: {semver: {range: '1.0.0 - 2.0.0'}}"], 4,
     "images[0].policy.semver.range: invalid semver range '1.0.0 - 2.0.0': hyphen ranges"),
    ([*IMAGE[:2], "  policy: {numerical: up}"], 4,
     "images[0].policy.numerical: must be asc or desc, not 'up'"),
    ([*IMAGE[:2], "  policy: {alphabetical: {order: descending}}"], 4,
     "images[0].policy.alphabetical.order: must be asc or desc, not 'descending'"),
    ([*IMAGE[:2], "  policy: {semver: '^1', numerical: asc}"], 4,
     "images[0].policy: give exactly one of semver, numerical, alphabetical"),
    ([*IMAGE[:2], "  policy: {latest: true}"], 4, "images[0].policy: unknown key 'latest'"),
    ([*IMAGE, "  filterTags: {pattern: '^main-(?P<ts>[0-9]+'}"], 5,
     "images[0].filterTags.pattern: '^main-(?P<ts>[0-9]+' is not a regular expression"),
    ([*IMAGE, "  filterTags: {pattern: '^main-(?P<ts>[0-9]+)$', extract: '$time'}"], 5,
     "images[0].filterTags.extract: names group 'time', which the pattern does not have "
     "(its groups: ts)"),
    ([*IMAGE, "  filterTags: {pattern: '^main-([0-9]+)$', extract: '${2}'}"], 5,
     "names group '2'"),
    ([*IMAGE, "  insecure: true", "  auth: {usernameEnv: REG_USER, passwordEnv: REG_PASSWORD}"],
     6, "images[0].auth: credentials are never sent over plain HTTP"),
    ([*IMAGE, "  auth: {sshKeyFile: /key}"], 5,
     "images[0].auth.sshKeyFile: registries take usernameEnv and passwordEnv"),
    ([*IMAGE, "  password: hunter2"], 5, "images[0].password: inline secrets are not allowed"),
    ([*IMAGE, "  auth: {usernameEnv: REG_USER, password: hunter2}"], 5,
     "images[0].auth.password: inline secrets are not allowed"),
    ([*IMAGE, "  interval: soon"], 5, "images[0].interval: invalid duration 'soon'"),
    ([IMAGE[0]], 2, "images[0].repository: is required"),
]


@pytest.mark.parametrize("images,line,message", BAD_IMAGES,
                         ids=[f"images-{i}" for i in range(len(BAD_IMAGES))])
def test_bad_policies_are_named_by_line_and_field(tmp_path: Path, images: list[str], line: int,
                                                  message: str) -> None:
    fleet, problems, _ = check(tmp_path, images)
    assert fleet is None
    assert any(p.startswith(f"{tmp_path}/fleet.yaml:{line}: ") and message in p
               for p in problems), problems
    assert not any("hunter2" in p for p in problems)


UPDATES = "imageUpdates:"
BAD_UPDATES = [
    (["helmRepository: https://charts.example.com", UPDATES, "  path: ."], 9,
     "sources[0].imageUpdates: applies to Git sources only (a helmRepository source"),
    (["oci: {url: oci://registry.example.com/fleet, tag: v1}", UPDATES, "  path: ."], 9,
     "sources[0].imageUpdates: applies to Git sources only (an oci source"),
    ([*GIT, UPDATES, "  writeAuth: {usernameEnv: GIT_USER}"], 10,
     "sources[0].imageUpdates.writeAuth.passwordEnv: is required together with usernameEnv"),
    ([*GIT, UPDATES, "  writeAuth: {token: abc}"], 10,
     "sources[0].imageUpdates.writeAuth.token: inline secrets are not allowed"),
    ([*GIT, UPDATES, "  writeAuth: {}"], 10,
     "sources[0].imageUpdates.writeAuth: give sshKeyFile, or usernameEnv and passwordEnv"),
    ([*GIT, UPDATES, "  writeAuth: {sshKeyFile: /key}"], 10,
     "sources[0].imageUpdates.writeAuth.sshKeyFile: is a key for ssh URLs"),
    (["url: http://git.example.com/fleet.git", "branch: main", "insecure: true", UPDATES,
      "  writeAuth: {usernameEnv: GIT_USER, passwordEnv: GIT_TOKEN}"], 11,
     "sources[0].imageUpdates.writeAuth: credentials are never sent over plain http://"),
    ([*GIT, UPDATES, "  signingKey: {x509: /key.pem}"], 10,
     "sources[0].imageUpdates.signingKey: unknown key 'x509' (expected one of: ssh, gpg)"),
    ([*GIT, UPDATES, "  signingKey: {ssh: /a, gpg: /b}"], 10,
     "sources[0].imageUpdates.signingKey: give exactly one of ssh: FILE or gpg: FILE"),
    ([*GIT, UPDATES, "  push: {branch: 'image..updates'}"], 10,
     "sources[0].imageUpdates.push.branch: 'image..updates' is not a valid Git branch name"),
    ([*GIT, UPDATES, "  push: {branch: refs/heads/main}"], 10, "is a full ref name"),
    (["url: https://git.example.com/fleet.git", "tag: v1.0.0", UPDATES, "  path: ."], 10,
     "sources[0].imageUpdates.push.branch: is required: the source follows a tag"),
    ([*GIT, UPDATES, "  messageTemplate: 'images {changes} {author}'"], 10,
     "sources[0].imageUpdates.messageTemplate: unknown placeholder {author}: use {changes}, "
     "{count}, {source}"),
    ([*GIT, UPDATES, "  messageTemplate: '{changes.__class__}'"], 10, "unknown placeholder"),
    ([*GIT, UPDATES, "  messageTemplate: 'images {changes'"], 10, "is not a template"),
    ([*GIT, UPDATES, "  path: ../elsewhere"], 10,
     "sources[0].imageUpdates.path: must not contain '..' segments"),
    ([*GIT, UPDATES, "  author: {name: fleetsync, email: nobody}"], 10,
     "sources[0].imageUpdates.author.email: 'nobody' is not an email address"),
    ([*GIT, UPDATES, "  branch: main"], 10, "sources[0].imageUpdates: unknown key 'branch'"),
]


@pytest.mark.parametrize("source,line,message", BAD_UPDATES,
                         ids=[f"updates-{i}" for i in range(len(BAD_UPDATES))])
def test_bad_image_updates_are_named_by_line_and_field(tmp_path: Path, source: list[str],
                                                       line: int, message: str) -> None:
    fleet, problems, _ = check(tmp_path, IMAGE, source)
    assert fleet is None
    assert any(p.startswith(f"{tmp_path}/fleet.yaml:{line}: ") and message in p
               for p in problems), problems


def test_fleetsync_validate_names_the_file_line_and_field(tmp_path: Path) -> None:
    check(tmp_path, [*IMAGE[:2], "  policy: {numerical: up}"])
    done = subprocess.run([sys.executable, "-m", "scheduler.cli", "validate",
                           "-f", str(tmp_path / "fleet.yaml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0
    assert (f"{tmp_path / 'fleet.yaml'}:4: images[0].policy.numerical: must be asc or desc, "
            "not 'up'") in done.stdout + done.stderr
