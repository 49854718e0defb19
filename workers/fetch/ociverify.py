"""Cosign signatures of OCI artifacts: a pure check, no network, no files but the key.

A source with ``verify: {cosign: {publicKey: FILE}}`` accepts an artifact digest
only when the registry holds a cosign signature for it that ``FILE``'s key made.
cosign stores it beside the artifact as the manifest tagged ``sha256-<hex>.sig``:
each layer of that manifest is a "simple signing" payload

    {"critical": {"identity": {"docker-reference": "host/repo"},
                  "image": {"docker-manifest-digest": "sha256:..."},
                  "type": "cosign container image signature"},
     "optional": null}

with the base64 signature over the payload's bytes in the layer's annotation
``dev.cosignproject.cosign/signature``. The fetch (``workers.fetch.ociartifact``)
downloads the signature manifest and its payload layers and hands them here;
``verify_signature`` returns when one layer is a good signature by the key over
a payload naming exactly the digest being applied, and raises a permanent
``SourceError`` naming the source and the digest otherwise. The source then
stays at its last verified digest, as a Git source with ``verify`` does.

Keys: ECDSA (P-256 with SHA-256, what ``cosign generate-key-pair`` makes; P-384
with SHA-384), RSA (PKCS#1 v1.5 with SHA-256) and Ed25519, as PEM public keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from shared.errors import SourceError

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
PAYLOAD_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
MAX_PAYLOAD_BYTES = 64 * 1024       # a simple signing payload is a few hundred bytes
MAX_SIGNATURES = 16                 # layers of one signature manifest that are tried


@dataclass(frozen=True)
class SignatureLayer:
    """One layer of a signature manifest: its payload bytes (already checked against
    the layer's digest by the caller) and its annotations."""

    payload: bytes
    annotations: dict[str, str]


def signature_tag(digest: str) -> str:
    """The tag cosign stores the signature of ``digest`` under: ``sha256-<hex>.sig``."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}.sig"


def signature_layers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The layer descriptors of a signature manifest that carry a signature."""
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return []
    return [layer for layer in layers[:MAX_SIGNATURES] if isinstance(layer, dict)
            and isinstance(layer.get("annotations"), dict)
            and SIGNATURE_ANNOTATION in layer["annotations"]]


def load_public_key(pem: bytes, where: str) -> Any:
    """The public key of a PEM file; ``SourceError`` naming ``where`` when it is none."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise SourceError(f"{where}: not a PEM public key ({exc})") from None
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey,
                            ed25519.Ed25519PublicKey)):
        raise SourceError(f"{where}: unsupported key type {type(key).__name__} "
                          "(use ECDSA, RSA or Ed25519)")
    return key


def verify_signature(source: str, digest: str, layers: Sequence[SignatureLayer],
                     key: Any) -> None:
    """Return when one of ``layers`` is a good signature of ``digest`` by ``key``."""
    if not layers:
        raise SourceError(_refusal(source, digest, "is not signed (no cosign signature "
                                                   f"{signature_tag(digest)} in the registry)"))
    reasons = [_check(layer, digest, key) for layer in layers[:MAX_SIGNATURES]]
    if "" in reasons:
        return
    raise SourceError(_refusal(source, digest, reasons[0]))


def _check(layer: SignatureLayer, digest: str, key: Any) -> str:
    """Why ``layer`` is not a good signature of ``digest`` by ``key``; "" when it is."""
    if len(layer.payload) > MAX_PAYLOAD_BYTES:
        return f"has a signature payload of {len(layer.payload)} bytes (at most {MAX_PAYLOAD_BYTES})"
    try:
        signature = base64.b64decode(layer.annotations.get(SIGNATURE_ANNOTATION, ""),
                                     validate=True)
    except (binascii.Error, ValueError):
        return "has a signature annotation that is not base64"
    if not _signed_by(key, signature, layer.payload):
        return "has a signature that the public key did not make (signed by another key, or altered)"
    try:
        claim = json.loads(layer.payload)
        critical = claim["critical"]
        signed_digest = critical["image"]["docker-manifest-digest"]
        kind = critical["type"]
    except (ValueError, KeyError, TypeError):
        return "has a signature payload that is not a cosign simple signing document"
    if kind != SIGNATURE_TYPE:
        return f"has a signature of type {kind!r}, not {SIGNATURE_TYPE!r}"
    if signed_digest != digest:
        return f"has a signature made for another artifact ({signed_digest})"
    return ""


def _signed_by(key: Any, signature: bytes, payload: bytes) -> bool:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            chosen = hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
            key.verify(signature, payload, ec.ECDSA(chosen))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True


def payload_matches(payload: bytes, descriptor: dict[str, Any]) -> bool:
    """Whether ``payload`` is the blob ``descriptor`` names (size and sha256 digest)."""
    return (descriptor.get("size") == len(payload)
            and descriptor.get("digest") == "sha256:" + hashlib.sha256(payload).hexdigest())


def _refusal(source: str, digest: str, reason: str) -> str:
    return (f"source {source}: artifact {digest} {reason}; refusing it (verify.cosign requires "
            "a good signature by the public key), the last verified digest stays")
