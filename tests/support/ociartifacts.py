"""Pushing OCI artifacts of manifests and their cosign signatures to the test registry.

``push_artifact`` packs files into a tar.gz (as ``flux push artifact`` does) and pushes
it with the real ``oras`` as the layer of an artifact, with annotations; ``push_manifest``
pushes any manifest (``oras manifest push``: a layer that declares 1 GB, say);
``sign`` stores a cosign signature of a digest in cosign's own format, made with
``cryptography`` and pushed with ``oras``: the "simple signing" payload, ECDSA P-256
over SHA-256 (what ``cosign generate-key-pair`` and ``cosign sign --key`` make), its
base64 signature in the layer annotation ``dev.cosignproject.cosign/signature`` of
the manifest tagged ``sha256-<hex>.sig``. ``cosign_sign`` signs with the real
``cosign`` CLI (``fleetsync dev build --cosign``, which ``make test`` runs): a key pair
from ``cosign generate-key-pair``, ``cosign sign --key`` keyed and offline
(``--tlog-upload=false``), through the plain front.
"""

from __future__ import annotations

import base64
import subprocess
import gzip
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.registry import Registry, tool

FLUX_LAYER = "application/vnd.cncf.flux.content.v1.tar+gzip"
PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"


def tgz(files: dict[str, str], links: dict[str, str] | None = None) -> bytes:
    """A tar.gz of ``files`` (path -> text) and ``links`` (path -> symlink target);
    names are kept as given (``../x`` too: the point of some tests)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return gzip.compress(buf.getvalue(), mtime=0)


def push_artifact(registry: Registry, repo: str, tag: str, blob: bytes, workdir: Path, *,
                  media_type: str = FLUX_LAYER, annotations: dict[str, str] | None = None) -> str:
    """``oras push`` the layer ``blob`` as ``repo:tag`` through the plain front; the digest."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "manifests.tgz").write_bytes(blob)
    notes = [a for k, v in (annotations or {}).items() for a in ("--annotation", f"{k}={v}")]
    registry.oras("push", "--plain-http", f"{registry.plain.host}/{repo}:{tag}",
                  "--artifact-type", "application/vnd.fleetsync.manifests.v1",
                  f"manifests.tgz:{media_type}", *notes, cwd=workdir)
    return registry.digest(f"{registry.plain.host}/{repo}:{tag}")


def push_manifest(registry: Registry, repo: str, tag: str, manifest: dict, workdir: Path) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "manifest.json").write_text(json.dumps(manifest))
    registry.oras("manifest", "push", "--plain-http", f"{registry.plain.host}/{repo}:{tag}",
                  "manifest.json", cwd=workdir)
    return registry.digest(f"{registry.plain.host}/{repo}:{tag}")


@dataclass
class CosignKey:
    """An ECDSA P-256 key pair as ``cosign generate-key-pair`` makes one; ``public`` is the
    PEM file a source's ``verify.cosign.publicKey`` names."""

    private: ec.EllipticCurvePrivateKey
    public: Path

    @classmethod
    def make(cls, directory: Path, name: str) -> "CosignKey":
        key = ec.generate_private_key(ec.SECP256R1())
        public = directory / f"{name}.pub"
        directory.mkdir(parents=True, exist_ok=True)
        public.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return cls(key, public)


def sign(registry: Registry, repo: str, digest: str, key: CosignKey, workdir: Path) -> str:
    """Store a cosign signature of ``repo@digest`` made with ``key``; the signature's tag."""
    workdir.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"critical": {"identity": {"docker-reference": f"{registry.plain.host}/{repo}"},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"},
                          "optional": None}, separators=(",", ":")).encode()
    signature = key.private.sign(payload, ec.ECDSA(hashes.SHA256()))
    (workdir / "payload.json").write_bytes(payload)
    (workdir / "annotations.json").write_text(json.dumps({"payload.json": {
        "dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()}}))
    tag = digest.replace(":", "-") + ".sig"
    registry.oras("push", "--plain-http", f"{registry.plain.host}/{repo}:{tag}",
                  "--annotation-file", "annotations.json", f"payload.json:{PAYLOAD_TYPE}",
                  cwd=workdir)
    return tag


def cosign_sign(registry: Registry, repo: str, digest: str, workdir: Path) -> Path:
    """Sign ``repo@digest`` with the real cosign CLI and a fresh key pair; the public key."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**registry.env(), "COSIGN_PASSWORD": "test-key-password"}
    cosign = str(tool("cosign"))
    for argv in ([cosign, "generate-key-pair"],
                 [cosign, "sign", "--key", "cosign.key", "--tlog-upload=false",
                  "--allow-insecure-registry", "-y", f"{registry.plain.host}/{repo}@{digest}"]):
        done = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"cosign {argv[1]} failed: {done.stdout}{done.stderr}")
    return workdir / "cosign.pub"
