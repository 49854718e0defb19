"""SOPS-encrypted manifests, encrypted and decrypted by the real sops with real age keys.

The keys come from the real ``age-keygen`` (built from the ``filippo.io/age``
version that sops itself uses), the files are encrypted by sops for the test
recipient, committed to a real Git repository and rendered from the worker's
read-only checkout; the end-to-end tests run ``fleetsync sync --local`` against
the session's control planes. Tests that need sops build it with
``fleetsync dev build`` first: in CI they fail without it, elsewhere they skip.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from devtools.binaries import BinaryError, find_sops
from shared.spec.model import Application, Cluster, Selector
from tests.conftest import ROOT, need, new_redis_db
from tests.support.gitrender import Repo
from tests.support.stack import Stack
from workers.render.engine import render
from shared.errors import RenderError
from tests.support.helmutil import chart, helm  # noqa: F401  (helm: a fixture)
from workers.render.sops import (DEFAULT_SCRATCH, DecryptionFailed, Sops, file_system, key_types,
                                 metadata, sweep)

PASSWORD = "hunter2-" + "x7Qp"     # the plaintext that must appear only where it is wanted
SECRET = f"""apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
stringData:
  password: {PASSWORD}
"""
CONFIG = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n"


@dataclass(frozen=True)
class AgeKey:
    path: Path
    recipient: str


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    try:
        found = find_sops()
    except BinaryError as exc:
        need("sops and age-keygen", str(exc))
    if found is None:
        need("sops and age-keygen", "run `fleetsync dev build` (or .ci/run) first")
    return found


def _age_key(tools: dict[str, Path], path: Path) -> AgeKey:
    subprocess.run([str(tools["age-keygen"]), "-o", str(path)], check=True, capture_output=True,
                   timeout=30)
    public = next(line for line in path.read_text().splitlines() if line.startswith("# public key:"))
    return AgeKey(path, public.rpartition(" ")[2])


@pytest.fixture(scope="session")
def key(tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> AgeKey:
    """The identity the files are encrypted for."""
    return _age_key(tools, tmp_path_factory.mktemp("age") / "keys.txt")


@pytest.fixture(scope="session")
def other_key(tools: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> AgeKey:
    """A real age identity that is not a recipient of any test file."""
    return _age_key(tools, tmp_path_factory.mktemp("age-other") / "keys.txt")


def encrypt(tools: dict[str, Path], key: AgeKey, text: str, name: str = "secret.yaml") -> str:
    """``text`` encrypted by sops for ``key`` (only data and stringData, as people do)."""
    with tempfile.TemporaryDirectory() as home:     # no .sops.yaml, no user config
        done = subprocess.run(
            [str(tools["sops"]), "encrypt", "--age", key.recipient, "--filename-override", name,
             "--encrypted-regex", "^(data|stringData)$"],
            input=text, capture_output=True, text=True, cwd=home, env={"HOME": home}, timeout=30,
            check=True)
    assert PASSWORD not in done.stdout and "sops" in done.stdout
    return done.stdout


def sops_with(tools: dict[str, Path], key: AgeKey | None) -> Sops:
    return Sops(str(key.path) if key else None, str(tools["sops"]))


def app(path: str) -> Application:
    return Application(name="db", source="gitops", path=path, clusters=Selector(names=("c",)))


def objects_of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


@pytest.fixture()
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's TMPDIR: where a kustomize render's decrypted copy must come and go."""
    where = tmp_path / "tmpdir"
    where.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(where))
    return where


def no_plaintext_in(*trees: Path) -> None:
    for tree in trees:
        for path in tree.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert PASSWORD.encode() not in path.read_bytes(), f"plaintext left in {path}"


# --- recognising SOPS files (no binary needed) ------------------------------------------

def test_only_files_with_top_level_sops_metadata_are_sops_files() -> None:
    meta = "sops:\n  mac: ENC[AES256_GCM,data:x]\n  lastmodified: '2026-01-01T00:00:00Z'\n"
    assert metadata(SECRET + meta, "a/secret.yaml")
    assert metadata(json.dumps({"kind": "Secret", "sops": {"mac": "m", "age": []}}), "s.json")
    assert not metadata(SECRET, "a/secret.yaml")
    assert not metadata(CONFIG + "  sops: mentioned\n", "a/config.yaml")      # not top level
    assert not metadata(SECRET + "sops:\n  note: no mac\n", "a/secret.yaml")
    assert not metadata(SECRET + meta, "a/secret.txt")                        # not a manifest
    assert not metadata("sops: [unclosed\n", "a/broken.yaml")                 # reported later


# --- plain directories: decrypted in memory ---------------------------------------------

def test_plain_directory_secret_is_decrypted_and_the_checkout_keeps_ciphertext(
        tools, key, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Repo(tmp_path).write({"apps/db/secret.yaml": encrypt(tools, key, SECRET),
                                 "apps/db/config.yaml": CONFIG})
    tree = repo.tree()
    monkeypatch.chdir(key.path.parent)           # a key file named relative to the worker's cwd
    objects = render(app("apps/db"), Cluster("dev-1"), tree,
                     sops=Sops(key.path.name, str(tools["sops"])))
    [secret] = objects_of(objects, "Secret")
    assert secret["stringData"] == {"password": PASSWORD} and "sops" not in secret
    assert objects_of(objects, "ConfigMap")[0]["data"] == {"mode": "fast"}
    no_plaintext_in(tree, tmp_path / "cache")


def test_json_and_multi_document_sops_files(tools, key, tmp_path: Path) -> None:
    two = SECRET + "---\n" + SECRET.replace("name: db", "name: db-replica")
    as_json = json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api"},
                          "stringData": {"token": PASSWORD}})
    repo = Repo(tmp_path).write({"apps/db/secrets.yaml": encrypt(tools, key, two),
                                 "apps/db/api.json": encrypt(tools, key, as_json, "api.json")})
    objects = render(app("apps/db"), Cluster("dev-1"), repo.tree(), sops=sops_with(tools, key))
    secrets = {o["metadata"]["name"]: o["stringData"] for o in objects_of(objects, "Secret")}
    assert secrets == {"api": {"token": PASSWORD}, "db": {"password": PASSWORD},
                       "db-replica": {"password": PASSWORD}}


# --- kustomizations: decrypted in a private copy, removed afterwards ---------------------------

KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: data
labels:
  - pairs: {tier: db}
resources:
  - ../../base
  - secret.yaml
"""


def kustomize_repo(tools, key, tmp_path: Path) -> Repo:
    return Repo(tmp_path).write({"apps/db/kustomization.yaml": KUSTOMIZATION,
                                 "apps/db/secret.yaml": encrypt(tools, key, SECRET),
                                 "base/kustomization.yaml": "resources: [config.yaml]\n",
                                 "base/config.yaml": CONFIG,
                                 "clusters/dev-1/db/kustomization.yaml": "resources: [../../../apps/db]\n",
                                 "clusters/dev-1/readme.yaml": "note: not an object\n"})


def test_kustomization_builds_the_decrypted_secret(tools, key, tmp_path: Path,
                                                   private_tmp: Path) -> None:
    tree = kustomize_repo(tools, key, tmp_path).tree()
    for path in ("apps/db", "clusters/${cluster_name}"):      # a kustomization; a Flux directory
        objects = render(app(path), Cluster("dev-1"), tree, sops=sops_with(tools, key))
        [secret] = objects_of(objects, "Secret")
        assert secret["stringData"] == {"password": PASSWORD}, path
        assert secret["metadata"]["namespace"] == "data"
        assert secret["metadata"]["labels"] == {"tier": "db"} and "sops" not in secret
        assert objects_of(objects, "ConfigMap")[0]["metadata"]["labels"] == {"tier": "db"}
    assert list(private_tmp.iterdir()) == []        # the decrypted copy is gone
    no_plaintext_in(tree, tmp_path / "cache")


def test_a_kustomization_without_sops_files_builds_the_checkout_itself(
        tmp_path: Path, private_tmp: Path) -> None:
    tree = Repo(tmp_path).write({"apps/db/kustomization.yaml": "resources: [config.yaml]\n",
                                 "apps/db/config.yaml": CONFIG}).tree()
    objects = render(app("apps/db"), Cluster("dev-1"), tree, sops=Sops())
    assert [o["kind"] for o in objects] == ["ConfigMap"]
    assert list(private_tmp.iterdir()) == []


@pytest.fixture()
def scratch() -> Iterator[Path]:
    """A tmpfs directory of this test's own, where kustomize's decrypted copies must live."""
    if file_system(Path(DEFAULT_SCRATCH)) not in ("tmpfs", "ramfs"):
        need("a tmpfs", f"{DEFAULT_SCRATCH} is not a tmpfs on this machine")
    where = Path(tempfile.mkdtemp(prefix="fleetsync-test-", dir=DEFAULT_SCRATCH))
    yield where
    shutil.rmtree(where, ignore_errors=True)


# kustomize runs helm on the copy it builds: this helm records which files hold the
# plaintext at that moment (and where the chart is read from), then runs the real helm,
# or fails when told to.
RECORDER = """#!/bin/sh
if [ "$1" = template ]; then
  for arg in "$@"; do case "$arg" in */charts/*) echo "chart: $arg" >> {log};; esac; done
  grep -rlF {password} {places} 2>/dev/null | sed 's/^/plaintext: /' >> {log}
  [ -e {fail} ] && exit 1
fi
exec {helm} "$@"
"""


def test_a_kustomize_copy_holds_plaintext_on_the_tmpfs_only_and_is_removed(
        tools, key, helm, tmp_path: Path, private_tmp: Path, scratch: Path) -> None:
    from workers.render import kustomize
    from workers.render.helm import Helm

    repo = Repo(tmp_path / "repo")
    (repo.git.path / "shop" / "charts").mkdir(parents=True)
    chart(helm, repo.git.path / "shop" / "charts", hook=False)
    repo.write({"shop/kustomization.yaml": "resources: [secret.yaml]\nhelmCharts:\n"
                                           "  - name: web\n    releaseName: shop\n",
                "shop/secret.yaml": encrypt(tools, key, SECRET)})
    tree = repo.tree().resolve()
    log, fail = tmp_path / "recorded", tmp_path / "fail-now"
    recorder = tmp_path / "helm"
    recorder.write_text(RECORDER.format(log=log, password=PASSWORD, fail=fail, helm=helm,
                                        places=f"{scratch} {private_tmp} {tree}"))
    recorder.chmod(0o755)
    sops = Sops(str(key.path), str(tools["sops"]), scratch=str(scratch))
    out = kustomize.build(tree, tree / "shop", sops=sops, helm=Helm(str(recorder)))
    assert PASSWORD in out and "kind: Deployment" in out
    fail.touch()
    with pytest.raises(RenderError, match="kustomize build failed"):
        kustomize.build(tree, tree / "shop", sops=sops, helm=Helm(str(recorder)))
    recorded = log.read_text().splitlines()
    charts_read = [line for line in recorded if line.startswith("chart: ")]
    plaintext = [line.removeprefix("plaintext: ") for line in recorded if line.startswith("plaintext: ")]
    owned = scratch / f"fleetsync-{os.getuid()}"
    assert len(charts_read) == 2 and len(plaintext) == 2, recorded
    assert all(Path(path).is_relative_to(owned) for path in plaintext), recorded
    assert all(line.removeprefix("chart: ").startswith(f"{owned}/") for line in charts_read)
    assert oct(owned.stat().st_mode & 0o777) == "0o700"
    assert list(owned.iterdir()) == [] and list(private_tmp.iterdir()) == []   # both ends
    no_plaintext_in(tree, private_tmp, scratch)


def test_a_scratch_that_is_not_a_tmpfs_is_refused_before_decrypting(
        tools, key, tmp_path: Path) -> None:
    tree = kustomize_repo(tools, key, tmp_path).tree()
    on_disk = tmp_path / "disk"
    on_disk.mkdir()
    sops = Sops(str(key.path), str(tools["sops"]), scratch=str(on_disk))
    message = failure(sops, tree)
    assert "cannot decrypt apps/db/secret.yaml for kustomize: its decrypted copy is written " \
           "to a tmpfs only" in message and "FLEETSYNC_SOPS_TMPFS" in message
    assert list(on_disk.iterdir()) == []


def test_a_scratch_another_user_may_enter_is_refused(tools, key, tmp_path: Path,
                                                     scratch: Path) -> None:
    tree = kustomize_repo(tools, key, tmp_path).tree()
    (scratch / f"fleetsync-{os.getuid()}").mkdir(mode=0o755)
    os.chmod(scratch / f"fleetsync-{os.getuid()}", 0o755)
    message = failure(Sops(str(key.path), str(tools["sops"]), scratch=str(scratch)), tree)
    assert "is not a directory of this worker's user that only it may enter" in message


def test_a_copy_left_by_a_dead_worker_is_swept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f"fleetsync-sops-{dead.pid}-abc"
    (left / "tree").mkdir(parents=True)
    mine = tmp_path / f"fleetsync-sops-{os.getpid()}-def"
    mine.mkdir()
    sweep(tmp_path)
    assert left.exists(), "a fresh copy is left alone: its process may live in another PID namespace"
    long_ago = time.time() - 3600
    for path in (left, mine):
        os.utime(path, (long_ago, long_ago))
    sweep(tmp_path)
    assert not left.exists() and mine.exists()


# --- bad input: wrong key, missing key, no sops, a tampered file --------------------------

def failure(sops: Sops, tree: Path, path: str = "apps/db") -> str:
    with pytest.raises(DecryptionFailed) as caught:
        render(app(path), Cluster("dev-1"), tree, sops=sops)
    message = str(caught.value)
    assert PASSWORD not in message and "ENC[" not in message
    return message


def test_wrong_key_names_the_file_and_the_recipient(tools, key, other_key, tmp_path: Path,
                                                    private_tmp: Path) -> None:
    tree = Repo(tmp_path).write({"apps/db/secret.yaml": encrypt(tools, key, SECRET)}).tree()
    message = failure(sops_with(tools, other_key), tree)
    assert "cannot decrypt apps/db/secret.yaml: no matching age identity" in message
    assert key.recipient in message
    kustomized = kustomize_repo(tools, key, tmp_path / "k").tree()
    message = failure(sops_with(tools, other_key), kustomized)
    assert "cannot decrypt apps/db/secret.yaml: no matching age identity" in message
    assert list(private_tmp.iterdir()) == []


def test_missing_key(tools, key, tmp_path: Path) -> None:
    tree = Repo(tmp_path).write({"apps/db/secret.yaml": encrypt(tools, key, SECRET)}).tree()
    message = failure(sops_with(tools, None), tree)
    assert "cannot decrypt apps/db/secret.yaml: no matching age identity" in message
    assert "FLEETSYNC_SOPS_AGE_KEY_FILE is not set on this worker" in message
    gone = Sops(str(tmp_path / "no-such-keys.txt"), str(tools["sops"]))
    message = failure(gone, tree)
    assert "no matching age identity" in message and "cannot be read on this worker" in message


def test_a_worker_without_sops_says_so(tools, key, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tree = Repo(tmp_path).write({"apps/db/secret.yaml": encrypt(tools, key, SECRET)}).tree()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    message = failure(Sops(str(key.path)), tree)
    assert "cannot decrypt apps/db/secret.yaml: sops is not installed on this worker" in message
    assert "run `fleetsync dev build`" in message, "the one command that builds it"


def test_a_tampered_file_fails_its_mac(tools, key, tmp_path: Path) -> None:
    encrypted = encrypt(tools, key, SECRET)
    head, _, rest = encrypted.partition("password: ENC[AES256_GCM,data:")
    tampered = head + "password: ENC[AES256_GCM,data:" + ("A" if rest[0] != "A" else "B") + rest[1:]
    tree = Repo(tmp_path).write({"apps/db/secret.yaml": tampered}).tree()
    message = failure(sops_with(tools, key), tree)
    assert message.startswith("dev-1/db: cannot decrypt apps/db/secret.yaml: ")
    assert "authentication failed" in message or "MAC" in message


# --- key services: only the ones the operator configured ----------------------------------

class Listener:
    """A loopback HTTP server that records every request; nothing may reach it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _record(self) -> None:
                seen.append(f"{self.command} {self.path}")
                self.send_error(500)

            do_GET = do_PUT = do_POST = _record

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


def with_vault_key(encrypted: str, address: str, in_group: bool = False) -> str:
    """``encrypted`` with an hc_vault master key beside its age key, as a Git author could
    write it: sops tries it when age does not open the data key."""
    vault = (f"        - vault_address: {address}\n          engine_path: sops\n"
             "          key_name: fleet\n          created_at: \"2026-01-01T00:00:00Z\"\n"
             "          enc: vault:v1:bm90LWEta2V5\n")
    if not in_group:
        return encrypted.replace("\nsops:\n", "\nsops:\n    hc_vault:\n" + vault, 1)
    grouped = "    key_groups:\n        - hc_vault:\n" + vault.replace("        ", "            ")
    return encrypted.replace("\nsops:\n", "\nsops:\n" + grouped, 1)


@pytest.mark.parametrize("in_group", [False, True], ids=["top-level", "key-group"])
def test_a_vault_key_in_the_file_is_refused_and_never_called(
        tools, key, other_key, listener: Listener, tmp_path: Path, in_group: bool) -> None:
    text = with_vault_key(encrypt(tools, key, SECRET), listener.url, in_group)
    tree = Repo(tmp_path).write({"apps/db/secret.yaml": text}).tree()
    kustomized = Repo(tmp_path / "k").write({
        "apps/db/kustomization.yaml": "resources: [secret.yaml]\n",
        "apps/db/secret.yaml": text}).tree()
    messages = [failure(sops_with(tools, other_key), tree),      # age fails: sops would go on
                failure(sops_with(tools, key), tree),            # age fits: refused all the same
                failure(sops_with(tools, other_key), kustomized)]
    assert listener.requests == []
    for message in messages:
        assert "cannot decrypt apps/db/secret.yaml: its SOPS metadata names hc_vault keys" in message
        assert "decrypts with age only (FLEETSYNC_SOPS_KEY_TYPES)" in message


def test_an_allowed_key_type_is_tried_in_the_operators_order(tools, key, listener: Listener,
                                                             tmp_path: Path) -> None:
    """An operator who allows hc_vault accepts that sops calls it; age still comes first."""
    text = with_vault_key(encrypt(tools, key, SECRET), listener.url)
    tree = Repo(tmp_path).write({"apps/db/secret.yaml": text}).tree()
    allowed = Sops(str(key.path), str(tools["sops"]), key_types=("age", "hc_vault"))
    [secret] = objects_of(render(app("apps/db"), Cluster("dev-1"), tree, sops=allowed), "Secret")
    assert secret["stringData"] == {"password": PASSWORD}
    assert listener.requests == []          # age opened the data key: vault was not needed


def test_key_types_read_the_top_level_and_key_groups() -> None:
    meta = [{"mac": "m", "age": [{"recipient": "age1x"}], "kms": [], "pgp": None,
             "key_groups": [{"gcp_kms": [{"resource_id": "r"}]}, {"age": [{"recipient": "y"}]}]}]
    assert key_types(meta) == {"age", "gcp_kms"}


# --- end to end: fleetsync sync --local against a real cluster -----------------------------

def secret_stack(tools, key, tmp_path: Path, redis_url: str, clusters: dict[str, str]) -> Stack:
    stack = Stack(tmp_path, new_redis_db(redis_url), clusters)
    secret = SECRET.replace("name: db", f"name: db\n  namespace: {stack.namespace}")
    stack.repo.write("app/secret.yaml", encrypt(tools, key, secret))
    stack.repo.commit("the database password, encrypted with sops")
    stack.repo.push()
    stack.write_spec(["dev-1"])
    return stack


def sync_local(stack: Stack, tools, key: AgeKey | None) -> subprocess.CompletedProcess:
    env = {"FLEETSYNC_SOPS_BIN": str(tools["sops"]),
           "FLEETSYNC_SOPS_AGE_KEY_FILE": str(key.path) if key else ""}
    return subprocess.run([sys.executable, "-m", "scheduler.cli", "sync", stack.app, "--cluster",
                           "dev-1", "--local", "-o", "json"], cwd=ROOT, env=stack.env(**env),
                          capture_output=True, text=True, timeout=180)


@pytest.mark.k8s
def test_sync_local_applies_the_decrypted_secret(tools, key, dev_fleet, redis_url, tmp_path,
                                                 kube_clients) -> None:
    from kubernetes import client

    stack = secret_stack(tools, key, tmp_path, redis_url, dev_fleet.clusters)
    proc = sync_local(stack, tools, key)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["phase"] == "Ready"
    live = client.CoreV1Api(kube_clients["dev-1"]).read_namespaced_secret("db", stack.namespace)
    assert base64.b64decode(live.data["password"]).decode() == PASSWORD
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.mark.k8s
@pytest.mark.parametrize("which", ["wrong", "missing"])
def test_sync_local_without_the_right_key_fails_and_applies_nothing(
        which, tools, key, other_key, dev_fleet, redis_url, tmp_path, kube_clients) -> None:
    from kubernetes import client

    stack = secret_stack(tools, key, tmp_path, redis_url, dev_fleet.clusters)
    proc = sync_local(stack, tools, other_key if which == "wrong" else None)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "cannot decrypt app/secret.yaml: no matching age identity" in proc.stderr
    status = stack.status("dev-1")
    assert status["phase"] == "Failed", status
    assert "cannot decrypt app/secret.yaml: no matching age identity" in status["message"]
    names = [ns.metadata.name for ns in client.CoreV1Api(kube_clients["dev-1"]).list_namespace().items]
    assert stack.namespace not in names               # nothing of the unit was applied
    assert PASSWORD not in proc.stdout + proc.stderr
