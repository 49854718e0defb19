"""One commit per scan, pushed to a real ``git http-backend`` over HTTPS (and sshd): never forced.

Every commit a test makes is checked with ``commit_diff``: only the marked lines
differ from its parent.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from shared.errors import SourceError
from shared.spec.images import ImagePolicy, ImageUpdates, Signing
from shared.spec.model import Auth, Source, Verify
from tests.support import sshd
from tests.support.githttp import GitHttpServer
from tests.support.gitutil import GitRepo, git
from workers.fetch.gitsource import SourceCache
from workers.images.gitpush import commit_message, update_repository

REPO = "registry.example.com/apps/podinfo"
WEB = "registry.example.com/apps/web"
PODINFO = ImagePolicy(name="podinfo", repository=REPO, kind="semver", value="^1",
                      namespace="flux-system")
WEB_POLICY = ImagePolicy(name="web", repository=WEB, kind="semver", value="^2")
POLICIES = (PODINFO, WEB_POLICY)
MARK = '# {"$imagepolicy": "flux-system:podinfo"}'
MARK_TAG = '# {"$imagepolicy": "flux-system:podinfo:tag"}'

DEPLOYMENT = f"""# The app, hand-written
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo   # keep this comment
spec:
  template:
    spec:
      containers:
        - name: app
          image: {REPO}:1.0.0 {MARK}
          args: ['--port', "9898"]
        - name: web
          image: "{WEB}:2.0.0" # {{"$imagepolicy": "web"}}
"""
KUSTOMIZATION = f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [deployment.yaml]
images:
  - name: podinfo
    newName: {REPO}   # {{"$imagepolicy": "flux-system:podinfo:name"}}
    newTag: 1.0.0 {MARK_TAG}
"""
VALUES = f"""# Helm values
image:
  repository: {REPO}
  tag: "1.0.0"  {MARK_TAG}
  pullPolicy: IfNotPresent

replicas: 2
"""


@pytest.fixture
def work(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "work", bare_path=tmp_path / "served" / "fleet.git")
    repo.write("clusters/apps/deployment.yaml", DEPLOYMENT)
    repo.write("clusters/apps/kustomization.yaml", KUSTOMIZATION)
    repo.write("charts/podinfo/values.yaml", VALUES)
    repo.write("README.md", "# fleet\n")
    repo.commit("first")
    repo.push()
    return repo


@pytest.fixture
def server(tmp_path: Path, work: GitRepo) -> Iterator[GitHttpServer]:
    with GitHttpServer(tmp_path / "served", tls=True, readonly=("reader", "ro-pw")) as served:
        yield served


def source(url: str, **updates: Any) -> Source:
    return Source(name="fleet", url=url, ref_kind="branch", ref="main", interval=60.0,
                  auth=Auth(username_env="GIT_USER", password_env="GIT_PASSWORD"),
                  image_updates=ImageUpdates(author_name="fleetsync bot",
                                             author_email="bot@example.com", **updates))


def environ(server: GitHttpServer, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "GIT_SSL_CAINFO": server.ca_file, "GIT_USER": "fleet",
            "GIT_PASSWORD": "s3cret-pw", **extra}


def bare(work: GitRepo, *args: str) -> str:
    return git("--git-dir", str(work.bare_path), *args)


def commit_diff(work: GitRepo, sha: str) -> list[str]:
    """The ``-``/``+`` lines of one commit against its parent (no context)."""
    out = bare(work, "show", "--format=", "-U0", sha)
    return [ln for ln in out.splitlines()
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def only_marked_lines(work: GitRepo, sha: str) -> None:
    """Every line the commit touches holds a marker, and removed and added pair up."""
    lines = commit_diff(work, sha)
    assert lines and all('"$imagepolicy"' in ln for ln in lines), lines
    assert len([ln for ln in lines if ln[0] == "-"]) == len([ln for ln in lines if ln[0] == "+"])


def test_three_files_one_commit_only_marked_lines(work: GitRepo, server: GitHttpServer,
                                                  tmp_path: Path) -> None:
    before = bare(work, "rev-parse", "main").strip()
    result = update_repository(source(server.url("fleet.git")), POLICIES, {"podinfo": "1.1.0"},
                               environ(server), tmp_path / "images")
    assert result.commit == bare(work, "rev-parse", "main").strip()
    assert result.attempts == 1 and result.problems == () and result.branch == "main"
    assert bare(work, "rev-parse", f"{result.commit}^").strip() == before
    assert sorted((c.file, c.line) for c in result.changes) == [
        ("charts/podinfo/values.yaml", 4), ("clusters/apps/deployment.yaml", 11),
        ("clusters/apps/kustomization.yaml", 7)]
    only_marked_lines(work, result.commit)
    for rel, text in (("clusters/apps/deployment.yaml", DEPLOYMENT),
                      ("clusters/apps/kustomization.yaml", KUSTOMIZATION),
                      ("charts/podinfo/values.yaml", VALUES)):
        committed = bare(work, "show", f"main:{rel}")
        assert committed == text.replace(f"{REPO}:1.0.0", f"{REPO}:1.1.0").replace(
            "1.0.0", "1.1.0"), rel
    author = bare(work, "log", "-1", "--format=%an <%ae>|%cn <%ce>", "main").strip()
    assert author == "fleetsync bot <bot@example.com>|fleetsync bot <bot@example.com>"
    message = bare(work, "log", "-1", "--format=%B", "main")
    assert f"- clusters/apps/deployment.yaml: {REPO}:1.0.0 -> {REPO}:1.1.0 (policy podinfo)" \
        in message
    assert "- charts/podinfo/values.yaml: 1.0.0 -> 1.1.0 (policy podinfo)" in message


def test_two_policies_one_commit_both_in_the_message(work: GitRepo, server: GitHttpServer,
                                                     tmp_path: Path) -> None:
    src = source(server.url("fleet.git"), message_template="chore: {count} images\n\n{changes}")
    result = update_repository(src, POLICIES, {"podinfo": "1.1.0", "web": "2.3.0"},
                               environ(server), tmp_path / "images")
    assert result.commit is not None
    assert bare(work, "rev-list", "--count", "main").strip() == "2"
    message = bare(work, "log", "-1", "--format=%B", "main")
    assert message.startswith("chore: 4 images\n\n")
    assert f'- clusters/apps/deployment.yaml: {WEB}:2.0.0 -> {WEB}:2.3.0 (policy web)' in message
    assert "(policy podinfo)" in message
    only_marked_lines(work, result.commit)


def test_a_second_scan_with_nothing_new_commits_nothing(work: GitRepo, server: GitHttpServer,
                                                        tmp_path: Path) -> None:
    src, env = source(server.url("fleet.git")), environ(server)
    first = update_repository(src, POLICIES, {"podinfo": "1.1.0"}, env, tmp_path / "images")
    again = update_repository(src, POLICIES, {"podinfo": "1.1.0"}, env, tmp_path / "images")
    assert first.commit is not None
    assert (again.commit, again.changes, again.attempts) == (None, (), 0)
    assert bare(work, "rev-parse", "main").strip() == first.commit
    only_marked_lines(work, first.commit)


def test_the_branch_moved_before_the_push_is_redone_on_the_new_head(
        work: GitRepo, server: GitHttpServer, tmp_path: Path) -> None:
    other = GitRepo(tmp_path / "other")
    git("fetch", "-q", str(work.bare_path), "main", cwd=other.path)
    git("checkout", "-q", "-B", "main", "FETCH_HEAD", cwd=other.path)
    other.write("clusters/apps/extra.yaml", "kind: ConfigMap\n")
    # The marked line moves down: a textual rebase of a line-11 change would miss it.
    other.write("clusters/apps/deployment.yaml", "# moved\n" + DEPLOYMENT)
    theirs = other.commit("someone else's change")
    pushed: list[str] = []

    def push_first(method: str, path: str) -> None:
        if "service=git-receive-pack" in path and not pushed:
            git("push", "-q", str(work.bare_path), "main:main", cwd=other.path)
            pushed.append(path)

    server.on_request = push_first
    result = update_repository(source(server.url("fleet.git")), POLICIES, {"podinfo": "1.1.0"},
                               environ(server), tmp_path / "images")
    assert pushed and result.attempts == 2
    assert bare(work, "rev-parse", "main").strip() == result.commit
    assert bare(work, "rev-parse", f"{result.commit}^").strip() == theirs
    assert bare(work, "rev-list", "--merges", "main").strip() == ""
    assert bare(work, "show", "main:clusters/apps/extra.yaml") == "kind: ConfigMap\n"
    assert ("clusters/apps/deployment.yaml", 12) in [(c.file, c.line) for c in result.changes]
    only_marked_lines(work, result.commit)


def test_a_branch_that_keeps_moving_is_named_after_three_pushes(
        work: GitRepo, server: GitHttpServer, tmp_path: Path) -> None:
    other = GitRepo(tmp_path / "other")
    git("fetch", "-q", str(work.bare_path), "main", cwd=other.path)
    git("checkout", "-q", "-B", "main", "FETCH_HEAD", cwd=other.path)

    def always_move(method: str, path: str) -> None:
        if "service=git-receive-pack" in path:
            other.commit("again")
            git("push", "-q", str(work.bare_path), "main:main", cwd=other.path)

    server.on_request = always_move
    with pytest.raises(SourceError, match=r"source fleet: branch 'main' kept moving: 3 pushes"):
        update_repository(source(server.url("fleet.git")), POLICIES, {"podinfo": "1.1.0"},
                          environ(server), tmp_path / "images")
    assert bare(work, "log", "--format=%an", "main").count("fleetsync bot") == 0


def test_a_separate_branch_is_created_then_fast_forwarded(work: GitRepo, server: GitHttpServer,
                                                          tmp_path: Path) -> None:
    main = bare(work, "rev-parse", "main").strip()
    src, env = source(server.url("fleet.git"), push_branch="image-updates"), environ(server)
    first = update_repository(src, POLICIES, {"podinfo": "1.1.0"}, env, tmp_path / "images")
    assert first.branch == "image-updates" and first.commit is not None
    assert bare(work, "rev-parse", "image-updates").strip() == first.commit
    assert bare(work, "rev-parse", f"{first.commit}^").strip() == main
    assert bare(work, "rev-parse", "main").strip() == main
    second = update_repository(src, POLICIES, {"podinfo": "1.2.0"}, env, tmp_path / "images")
    assert bare(work, "rev-parse", f"{second.commit}^").strip() == first.commit
    assert bare(work, "rev-parse", "image-updates").strip() == second.commit
    assert {(c.old, c.new) for c in second.changes} == {("1.1.0", "1.2.0"),
                                                        (f"{REPO}:1.1.0", f"{REPO}:1.2.0")}
    only_marked_lines(work, first.commit)
    only_marked_lines(work, second.commit)


def test_an_ssh_signed_commit_verifies_with_allowed_signers(work: GitRepo, server: GitHttpServer,
                                                            tmp_path: Path) -> None:
    key = sshd.keygen(tmp_path / "signing_key", "fleetsync signing")
    signers = tmp_path / "allowed_signers"
    signers.write_text("bot@example.com " + " ".join(
        (tmp_path / "signing_key.pub").read_text().split()[:2]) + "\n")
    src = source(server.url("fleet.git"), signing=Signing(kind="ssh", key_file=str(key)))
    result = update_repository(src, POLICIES, {"podinfo": "1.1.0"}, environ(server),
                               tmp_path / "images")
    assert result.commit is not None
    said = git("--git-dir", str(work.bare_path), "-c", "gpg.format=ssh", "-c",
               f"gpg.ssh.allowedSignersFile={signers}", "log", "-1", "--format=%G?|%GS",
               result.commit)
    assert said.strip() == "G|bot@example.com"
    git("--git-dir", str(work.bare_path), "-c", f"gpg.ssh.allowedSignersFile={signers}",
        "verify-commit", result.commit)
    only_marked_lines(work, result.commit)


def verified_by_the_fetch_side(work: GitRepo, verify: Verify, branch: str,
                               tmp_path: Path) -> str:
    """What ``verify:`` on a source of the bare repository accepts at ``branch``."""
    reader = Source(name="reader", url=work.bare_path.resolve().as_uri(), ref_kind="branch",
                    ref=branch, interval=60.0, verify=verify)
    return SourceCache(tmp_path / "cache", timeout=30, allow_local=True).fetch(reader)


def test_the_fetch_side_accepts_the_ssh_signed_commit(work: GitRepo, server: GitHttpServer,
                                                      tmp_path: Path) -> None:
    key = sshd.keygen(tmp_path / "signing_key", "fleetsync signing")
    signers = tmp_path / "allowed_signers"
    signers.write_text("bot@example.com " + " ".join(
        (tmp_path / "signing_key.pub").read_text().split()[:2]) + "\n")
    src = source(server.url("fleet.git"), signing=Signing(kind="ssh", key_file=str(key)),
                 push_branch="image-updates")
    result = update_repository(src, POLICIES, {"podinfo": "1.1.0"}, environ(server),
                               tmp_path / "images")
    assert verified_by_the_fetch_side(work, Verify("ssh", str(signers)), "image-updates",
                                      tmp_path) == result.commit
    only_marked_lines(work, result.commit or "")


@pytest.fixture
def gpg_key(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(armored secret key, armored public keyring) of a key made for the test."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(home), "PATH": "/usr/bin:/bin"}

    def gpg(*args: str) -> str:
        return subprocess.run(["gpg", "--batch", "--quiet", *args], env=env, capture_output=True,
                              text=True, check=True, timeout=60).stdout
    try:
        gpg("--passphrase", "", "--quick-gen-key", "Bot <bot@example.com>", "ed25519", "sign",
            "never")
        secret, public = tmp_path / "secret.asc", tmp_path / "public.asc"
        secret.write_text(gpg("--armor", "--export-secret-keys", "bot@example.com"))
        public.write_text(gpg("--armor", "--export", "bot@example.com"))
        yield secret, public
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, timeout=30)


def test_a_gpg_signed_commit_is_accepted_by_the_fetch_side(
        work: GitRepo, server: GitHttpServer, gpg_key: tuple[Path, Path], tmp_path: Path) -> None:
    secret, public = gpg_key
    src = source(server.url("fleet.git"), signing=Signing(kind="gpg", key_file=str(secret)))
    result = update_repository(src, POLICIES, {"podinfo": "1.1.0"}, environ(server),
                               tmp_path / "images")
    assert verified_by_the_fetch_side(work, Verify("gpg", str(public)), "main",
                                      tmp_path) == result.commit
    only_marked_lines(work, result.commit or "")
    agents = subprocess.run(["pgrep", "-af", "fleetsync-sign-"], capture_output=True, text=True)
    assert agents.stdout == ""


def test_a_marker_naming_an_unknown_policy_commits_nothing(work: GitRepo, server: GitHttpServer,
                                                           tmp_path: Path) -> None:
    work.write("clusters/apps/bad.yaml", 'image: x:1 # {"$imagepolicy": "flux-system:nope"}\n')
    head = work.commit("a stray marker")
    work.push()
    result = update_repository(source(server.url("fleet.git")), POLICIES, {"podinfo": "1.1.0"},
                               environ(server), tmp_path / "images")
    assert (result.commit, result.attempts, result.message) == (None, 0, "")
    assert result.problems == ("clusters/apps/bad.yaml:1: marker names policy "
                               "'flux-system:nope', which is not in images:",)
    assert bare(work, "rev-parse", "main").strip() == head


def test_a_read_only_credential_is_refused_and_named(work: GitRepo, server: GitHttpServer,
                                                     tmp_path: Path) -> None:
    head = bare(work, "rev-parse", "main").strip()
    src = source(server.url("fleet.git"),
                 write_auth=Auth(username_env="RO_USER", password_env="RO_TOKEN"))
    env = environ(server, RO_USER="reader", RO_TOKEN="ro-pw")
    with pytest.raises(SourceError) as raised:
        update_repository(src, POLICIES, {"podinfo": "1.1.0"}, env, tmp_path / "images")
    message = str(raised.value)
    assert message.startswith("source fleet: push to branch 'main' of https://127.0.0.1:")
    assert "refused with writeAuth (usernameEnv RO_USER, passwordEnv RO_TOKEN)" in message
    assert "ro-pw" not in message and "s3cret-pw" not in message
    assert bare(work, "rev-parse", "main").strip() == head
    config = (tmp_path / "images" / "repo" / ".git" / "config").read_text()
    assert "ro-pw" not in config and "s3cret-pw" not in config and "reader" not in config


def test_the_write_credential_is_used_for_the_push_only(work: GitRepo, server: GitHttpServer,
                                                        tmp_path: Path) -> None:
    src = dataclasses.replace(
        source(server.url("fleet.git"),
               write_auth=Auth(username_env="GIT_USER", password_env="GIT_PASSWORD")),
        auth=Auth(username_env="RO_USER", password_env="RO_TOKEN"))
    env = environ(server, RO_USER="reader", RO_TOKEN="ro-pw")
    result = update_repository(src, POLICIES, {"podinfo": "1.1.0"}, env, tmp_path / "images")
    assert result.commit == bare(work, "rev-parse", "main").strip()
    pushes = {user for user, path in server.users if "receive-pack" in path}
    reads = {user for user, path in server.users if "receive-pack" not in path}
    assert pushes == {"fleet"} and reads == {"reader"}
    only_marked_lines(work, result.commit)


def test_a_symlinked_yaml_outside_the_tree_is_skipped_and_named(
        work: GitRepo, server: GitHttpServer, tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(f"image: {REPO}:1.0.0 {MARK}\n")
    work.symlink("clusters/apps/link.yaml", str(outside))
    work.commit("a link out of the tree")
    work.push()
    result = update_repository(source(server.url("fleet.git")), POLICIES, {"podinfo": "1.1.0"},
                               environ(server), tmp_path / "images")
    assert result.skipped == (f"clusters/apps/link.yaml: a symlink (to {str(outside)!r}), not followed",)
    assert outside.read_text() == f"image: {REPO}:1.0.0 {MARK}\n"
    assert result.commit is not None
    assert "link.yaml" not in bare(work, "show", "--stat", "--format=", result.commit)
    only_marked_lines(work, result.commit)


def test_a_push_over_ssh_with_a_key(work: GitRepo, tmp_path: Path) -> None:
    reason = sshd.available()
    if reason:
        pytest.skip(reason)
    with sshd.SshServer(tmp_path / "sshd") as server:
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_line())
        key = str(server.client_key)
        src = Source(name="fleet", url=server.url(work.bare_path), ref_kind="branch", ref="main",
                     interval=60.0, known_hosts=str(known), auth=Auth(ssh_key_file=key),
                     image_updates=ImageUpdates(write_auth=Auth(ssh_key_file=key),
                                                push_branch="image-updates"))
        result = update_repository(src, POLICIES, {"podinfo": "1.1.0"},
                                   {"PATH": os.environ["PATH"]}, tmp_path / "images")
    assert result.commit == bare(work, "rev-parse", "image-updates").strip()
    only_marked_lines(work, result.commit)


def test_a_missing_source_branch_and_a_stale_lock(work: GitRepo, server: GitHttpServer,
                                                  tmp_path: Path) -> None:
    src, env = source(server.url("fleet.git")), environ(server)
    missing = dataclasses.replace(src, ref="nope")
    with pytest.raises(SourceError, match=r"source fleet: branch 'nope' not found in https://"):
        update_repository(missing, POLICIES, {"podinfo": "1.1.0"}, env, tmp_path / "images")
    (tmp_path / "images" / "repo" / ".git" / "index.lock").write_text("")
    result = update_repository(src, POLICIES, {"podinfo": "1.1.0"}, env, tmp_path / "images")
    assert result.commit == bare(work, "rev-parse", "main").strip()
    only_marked_lines(work, result.commit)


def test_the_message_template_is_replaced_not_formatted() -> None:
    from workers.images.setters import Change
    updates = ImageUpdates(message_template="{source}: {count} {0.__class__} {changes}")
    text = commit_message(updates, "fleet", [Change("a.yaml", 3, "web", "1", "2")])
    assert text == "fleet: 1 {0.__class__} - a.yaml: 1 -> 2 (policy web)\n"
    assert re.match(r"Update images\n\n- a.yaml", commit_message(ImageUpdates(), "f", [
        Change("a.yaml", 3, "web", "1", "2")]))
