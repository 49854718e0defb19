"""``oci:`` sources against the real test registry: artifacts pushed with oras, resolved,
verified and extracted by the fetch stage (workers.fetch.ociartifact through
``stages.fetch``), and every bad artifact refused with the source kept where it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import SourceError
from shared.settings import Settings
from tests.support.ociartifacts import (CosignKey, cosign_sign, push_artifact, push_manifest,
                                        sign, tgz)
from tests.support.registry import Registry, registry, unique_repo  # noqa: F401
from workers.context import Context
from workers.run import stages

SPEC = """\
sources:
  - name: config
    oci: {{url: "oci://{host}/{repo}", {ref}}}
    insecure: true
{extra}clusters:
  - name: dev
applications:
  - name: web
    source: config
    path: apps/web
    clusters: {{names: [dev]}}
"""
NOTES = {"org.opencontainers.image.source": "https://git.example/fleet-config",
         "org.opencontainers.image.revision": "main@sha1:0123abcd"}


def files(value: str) -> dict[str, str]:
    return {"apps/web/config.yaml": f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web}}\n"
                                    f"data: {{value: '{value}'}}\n"}


def context(tmp_path: Path, registry: Registry, repo: str, ref: str, *extra: str) -> Context:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "fleet.yaml"
    spec.write_text(SPEC.format(host=registry.plain.host, repo=repo, ref=ref,
                                extra="".join(f"    {line}\n" for line in extra)))
    return Context.connect(Settings(fleet_path=str(spec), cache_dir=tmp_path / "cache"),
                           use_redis=False)


def tree_value(ctx: Context, revision: str) -> str:
    source = ctx.fleet().sources["config"]
    tree = stages._checkout(ctx, source, revision)
    return (tree / "apps/web/config.yaml").read_text()


def test_a_tag_resolves_to_its_digest_and_its_tree(registry: Registry, tmp_path: Path) -> None:
    repo = unique_repo("config")
    digest = push_artifact(registry, repo, "v1.0.0", tgz(files("one")), tmp_path / "p",
                           annotations=NOTES)
    ctx = context(tmp_path, registry, repo, "tag: v1.0.0")
    revision = stages.fetch(ctx, "config")
    assert f"sha256:{revision}" == digest
    assert "value: 'one'" in tree_value(ctx, revision)
    record = ctx.status.source_record("config")
    assert record.revision == revision and record.error == ""
    assert record.commit["subject"] == (f"oci v1.0.0 {digest} (source https://git.example/"
                                        "fleet-config, revision main@sha1:0123abcd)")
    tree = ctx.artifacts.tree_path(revision)
    assert not (tree / "apps/web/config.yaml").stat().st_mode & 0o222   # read-only, as Git trees


def test_a_semver_range_follows_new_tags_and_a_digest_pin_does_not(registry: Registry,
                                                                   tmp_path: Path) -> None:
    repo = unique_repo("config")
    first = push_artifact(registry, repo, "1.0.0", tgz(files("one")), tmp_path / "p1")
    ranged = context(tmp_path / "a", registry, repo, "semver: '>=1.0.0 <2.0.0'")
    pinned = context(tmp_path / "b", registry, repo, f"digest: '{first}'")
    assert stages.fetch(ranged, "config") == first[7:] == stages.fetch(pinned, "config")
    second = push_artifact(registry, repo, "1.1.0", tgz(files("two")), tmp_path / "p2")
    push_artifact(registry, repo, "2.0.0", tgz(files("three")), tmp_path / "p3")
    registry.crane("tag", "--insecure", f"{registry.plain.host}/{repo}:1.1.0", "latest")
    assert stages.fetch(ranged, "config") == second[7:]
    assert "value: 'two'" in tree_value(ranged, second[7:])
    assert stages.fetch(pinned, "config") == first[7:]
    assert "value: 'one'" in tree_value(pinned, first[7:])


def test_a_signed_artifact_is_accepted_and_others_refused_keeping_the_last(
        registry: Registry, tmp_path: Path) -> None:
    repo = unique_repo("config")
    trusted, stranger = CosignKey.make(tmp_path / "k", "trusted"), CosignKey.make(tmp_path / "k", "other")
    good = push_artifact(registry, repo, "v1", tgz(files("one")), tmp_path / "p1")
    sign(registry, repo, good, trusted, tmp_path / "s1")
    ctx = context(tmp_path, registry, repo, "tag: v1", f"verify: {{cosign: {{publicKey: {trusted.public}}}}}")
    assert stages.fetch(ctx, "config") == good[7:]
    unsigned = push_artifact(registry, repo, "v1", tgz(files("unsigned")), tmp_path / "p2")
    with pytest.raises(SourceError, match=f"artifact {unsigned} is not signed"):
        stages.fetch(ctx, "config")
    assert ctx.status.source_state("config")[0] == good[7:]
    resigned = push_artifact(registry, repo, "v1", tgz(files("stranger")), tmp_path / "p3")
    sign(registry, repo, resigned, stranger, tmp_path / "s3")
    with pytest.raises(SourceError, match="the public key did not make"):
        stages.fetch(ctx, "config")
    revision, error = ctx.status.source_state("config")
    assert revision == good[7:]
    assert f"source config: artifact {resigned}" in error and "last verified digest stays" in error
    assert not ctx.artifacts.tree_path(resigned[7:]).exists()       # nothing of it kept


def test_a_signature_made_by_the_cosign_cli_is_accepted_for_its_key_only(
        registry: Registry, tmp_path: Path) -> None:
    repo = unique_repo("config")
    digest = push_artifact(registry, repo, "v1", tgz(files("one")), tmp_path / "p")
    public = cosign_sign(registry, repo, digest, tmp_path / "cosign")
    ctx = context(tmp_path / "a", registry, repo, "tag: v1", f"verify: {{cosign: {{publicKey: {public}}}}}")
    assert stages.fetch(ctx, "config") == digest[7:]
    other = CosignKey.make(tmp_path / "k", "other").public
    refused = context(tmp_path / "b", registry, repo, "tag: v1",
                      f"verify: {{cosign: {{publicKey: {other}}}}}")
    with pytest.raises(SourceError, match=f"artifact {digest} has a signature that the public "
                                          "key did not make"):
        stages.fetch(refused, "config")


def bad(registry: Registry, tmp_path: Path, blob: bytes, *extra: str) -> tuple[Context, str]:
    repo = unique_repo("config")
    digest = push_artifact(registry, repo, "v1", blob, tmp_path / "p")
    return context(tmp_path, registry, repo, "tag: v1", *extra), digest


def test_a_layer_of_another_media_type_is_refused(registry: Registry, tmp_path: Path) -> None:
    repo = unique_repo("config")
    push_artifact(registry, repo, "v1", tgz(files("one")), tmp_path / "p",
                  media_type="application/vnd.oci.image.layer.v1.tar+gzip")
    ctx = context(tmp_path, registry, repo, "tag: v1, layerSelector: {mediaType: "
                                            "application/vnd.cncf.flux.content.v1.tar+gzip}")
    with pytest.raises(SourceError, match="has no layer of media type 'application/vnd.cncf.flux."
                                          "content.v1.tar\\+gzip'.*it has application/vnd.oci.image"):
        stages.fetch(ctx, "config")
    assert ctx.status.source_state("config")[0] == ""


@pytest.mark.parametrize("blob, said", [
    (tgz({"apps/web/ok.yaml": "a: 1\n", "../escape.yaml": "a: 1\n"}),
     "member '../escape.yaml' has a path that leaves the artifact"),
    (tgz({"apps/web/ok.yaml": "a: 1\n"}, links={"apps/web/passwd.yaml": "/etc/passwd"}),
     "member 'apps/web/passwd.yaml' is a symlink to '/etc/passwd', outside the artifact"),
])
def test_a_layer_with_paths_or_links_out_is_refused(registry: Registry, tmp_path: Path,
                                                    blob: bytes, said: str) -> None:
    ctx, digest = bad(registry, tmp_path, blob)
    with pytest.raises(SourceError) as err:
        stages.fetch(ctx, "config")
    assert f"source config: artifact {digest}" in str(err.value) and said in str(err.value)
    assert ctx.status.source_state("config")[0] == ""
    assert not ctx.artifacts.tree_path(digest[7:]).exists()
    assert not (tmp_path / "cache" / "oci" / "escape.yaml").exists()


def test_a_1gb_layer_is_refused_by_its_declared_size_before_it_is_read(
        registry: Registry, tmp_path: Path) -> None:
    repo = unique_repo("config")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                           "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310"
                                     "c060f61caaff8a"},
                "layers": [{"mediaType": "application/vnd.cncf.flux.content.v1.tar+gzip",
                            "digest": "sha256:" + "b" * 64, "size": 2**30}]}
    digest = push_manifest(registry, repo, "v1", manifest, tmp_path / "p")
    ctx = context(tmp_path, registry, repo, "tag: v1")
    seen = len(registry.plain.requests)
    with pytest.raises(SourceError, match=f"artifact {digest}: the layer is 1073741824 bytes, "
                                          "larger than the 67108864 byte limit .*not downloaded"):
        stages.fetch(ctx, "config")
    asked = [r.path for r in registry.plain.requests[seen:]]
    assert asked and not any("/blobs/" in path for path in asked), asked
    assert ctx.status.source_state("config")[0] == ""
