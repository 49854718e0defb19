"""verify: a source's head must be signed by a trusted key, else the last verified revision stays.

Real signatures: commits signed with ``ssh-keygen -Y`` keys through git's
``gpg.format=ssh`` and with a GnuPG key made for the test; unsigned commits and
commits signed by a key that is not trusted are refused with the commit and the
reason, the source's recorded revision does not move, and the unit's status
says why.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from shared.errors import SourceError
from shared.settings import Settings
from shared.spec.model import Verify
from tests.support.gitutil import GitRepo, src
from tests.support.sshd import keygen
from workers.run import requests, stages
from workers.context import Context
from workers.fetch.gitsource import SourceCache


@pytest.fixture()
def repo(tmp_path: Path) -> GitRepo:
    r = GitRepo(tmp_path / "work")
    r.write("apps/web/deploy.yaml", "kind: Deployment\n")
    return r


@pytest.fixture()
def keys(tmp_path: Path) -> dict[str, Path]:
    """A trusted and an untrusted ssh signing key, and the allowed-signers file of the first."""
    trusted = keygen(tmp_path / "trusted", "release@example.com")
    stranger = keygen(tmp_path / "stranger", "someone@example.com")
    signers = tmp_path / "allowed_signers"
    kind, key = Path(f"{trusted}.pub").read_text().split()[:2]
    signers.write_text(f'release@example.com namespaces="git" {kind} {key}\n')
    return {"trusted": trusted, "stranger": stranger, "signers": signers}


def verified(url: str, keys: dict[str, Path]) -> object:
    return replace(src(url), verify=Verify("ssh", str(keys["signers"])))


def test_a_commit_signed_by_an_allowed_key_is_accepted(repo: GitRepo, keys: dict[str, Path],
                                                       tmp_path: Path) -> None:
    sha = repo.signed_commit("signed", str(keys["trusted"]))
    cache = SourceCache(tmp_path / "cache", timeout=30)
    assert cache.fetch(verified(repo.bare_url(), keys)) == sha     # type: ignore[arg-type]
    assert cache.fetch(verified(repo.bare_url(), keys)) == sha     # type: ignore[arg-type]


def test_an_unsigned_head_is_refused_naming_the_commit(repo: GitRepo, keys: dict[str, Path],
                                                       tmp_path: Path) -> None:
    repo.signed_commit("signed", str(keys["trusted"]))
    sha = repo.commit("not signed")
    with pytest.raises(SourceError) as caught:
        SourceCache(tmp_path / "cache").fetch(verified(repo.bare_url(), keys))  # type: ignore[arg-type]
    assert str(caught.value).startswith(f"source platform: commit {sha} is not signed; refusing it")


def test_a_commit_signed_by_a_key_not_in_allowed_signers_is_refused(
        repo: GitRepo, keys: dict[str, Path], tmp_path: Path) -> None:
    sha = repo.signed_commit("signed by a stranger", str(keys["stranger"]))
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", f"{keys['stranger']}.pub"],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    with pytest.raises(SourceError) as caught:
        SourceCache(tmp_path / "cache").fetch(verified(repo.bare_url(), keys))  # type: ignore[arg-type]
    assert str(caught.value).startswith(
        f"source platform: commit {sha} is signed by key {fingerprint}, which is not in "
        f"allowedSigners {keys['signers']}; refusing it")


def test_an_unreadable_allowed_signers_file_is_named(repo: GitRepo, tmp_path: Path) -> None:
    repo.commit("whatever")
    source = replace(src(repo.bare_url()), verify=Verify("ssh", str(tmp_path / "absent")))
    with pytest.raises(SourceError, match=r"verify.ssh.allowedSigners: .*absent is not readable"):
        SourceCache(tmp_path / "cache").fetch(source)


SPEC = """\
sources:
  - name: platform
    url: {url}
    branch: main
    verify: {{ssh: {{allowedSigners: {signers}}}}}
clusters:
  - name: dev
applications:
  - name: web
    source: platform
    path: apps/web
    clusters: {{names: [dev]}}
"""


def test_the_last_verified_revision_stays_and_the_status_says_why(
        repo: GitRepo, keys: dict[str, Path], tmp_path: Path) -> None:
    good = repo.signed_commit("signed", str(keys["trusted"]))
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC.format(url=repo.bare_url(), signers=keys["signers"]))
    ctx = Context.connect(Settings(fleet_path=str(spec), cache_dir=tmp_path / "cache",
                                   allow_local_sources=True), use_redis=False)
    assert stages.fetch(ctx, "platform") == good
    bad = repo.signed_commit("pushed with a stolen push token", str(keys["stranger"]))
    repo.push()
    with pytest.raises(SourceError, match=f"commit {bad} is signed by key"):
        stages.fetch(ctx, "platform")
    assert ctx.status.source_revision("platform")[0] == good        # type: ignore[index]
    revision, error = ctx.status.source_state("platform")
    assert revision == good and f"commit {bad} is signed by key" in error
    assert "not in allowedSigners" in error
    # a sync asked for now fetches again, is refused again, and goes on at the last good
    # revision (the apply's status then names the refusal: see workers/run/runner.py)
    result, sends = requests.request(ctx, "web", "dev", "api", fresh=True)
    assert "error" not in result and result["revision"] == good
    assert [s.name for s in sends] == ["fleetsync.render"] and sends[0].args[2] == good
    assert ctx.status.source_revision("platform")[0] == good        # type: ignore[index]


# -- gpg --------------------------------------------------------------------------------------

@pytest.fixture()
def gnupg(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A GnuPG home with two signing keys (one exported as the trusted keyring)."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(home)}

    def gpg(*args: str) -> str:
        return subprocess.run(["gpg", "--batch", "--quiet", *args], env={**env, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True, timeout=60).stdout
    try:
        for uid in ("Release <release@example.com>", "Stranger <someone@example.com>"):
            gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
        (tmp_path / "keyring.asc").write_text(gpg("--armor", "--export", "release@example.com"))
        yield {**env, "keyring": str(tmp_path / "keyring.asc")}
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env={**env, "PATH": "/usr/bin:/bin"},
                       capture_output=True, timeout=30)


def test_gpg_signatures_from_the_keyring_only(repo: GitRepo, gnupg: dict[str, str],
                                              tmp_path: Path) -> None:
    home = {"GNUPGHOME": gnupg["GNUPGHOME"]}
    good = repo.signed_commit("signed", "release@example.com", "openpgp", home)
    source = replace(src(repo.bare_url()), verify=Verify("gpg", gnupg["keyring"]))
    cache = SourceCache(tmp_path / "cache", timeout=30)
    assert cache.fetch(source) == good
    bad = repo.signed_commit("signed by a stranger", "someone@example.com", "openpgp", home)
    repo.push()
    with pytest.raises(SourceError, match=rf"commit {bad} is signed by key [0-9A-F]{{16}}, "
                                          rf"which is not in keyring {gnupg['keyring']}; "):
        cache.fetch(source)
    unsigned = repo.commit("not signed")
    repo.push()
    with pytest.raises(SourceError, match=f"commit {unsigned} is not signed"):
        cache.fetch(source)
    # the check imports the keyring into a home of its own and leaves no agent behind
    agents = subprocess.run(["pgrep", "-af", "fleetsync-gpg-"], capture_output=True, text=True)
    assert agents.stdout == ""
