"""Cosign signature checks (workers.fetch.ociverify) on vectors signed in the test."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from shared.errors import SourceError
from workers.fetch.ociverify import (SIGNATURE_ANNOTATION, SignatureLayer, load_public_key,
                                     payload_matches, signature_layers, signature_tag,
                                     verify_signature)

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def payload(digest: str = DIGEST, kind: str = "cosign container image signature") -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": "reg.example/config"},
                                    "image": {"docker-manifest-digest": digest},
                                    "type": kind}, "optional": None}).encode()


def sign(key, data: bytes) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        raw = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        raw = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raw = key.sign(data)
    return base64.b64encode(raw).decode()


def public(key) -> object:
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return load_public_key(pem, "verify.cosign.publicKey cosign.pub")


def layer(key, data: bytes | None = None) -> SignatureLayer:
    data = payload() if data is None else data
    return SignatureLayer(data, {SIGNATURE_ANNOTATION: sign(key, data)})


@pytest.fixture(scope="module")
def p256():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize("make", [lambda: ec.generate_private_key(ec.SECP256R1()),
                                  lambda: rsa.generate_private_key(65537, 2048),
                                  ed25519.Ed25519PrivateKey.generate])
def test_a_good_signature_by_the_key_is_accepted(make):
    key = make()
    verify_signature("config", DIGEST, [layer(key)], public(key))


def test_an_unsigned_digest_is_refused_naming_source_digest_and_tag(p256):
    with pytest.raises(SourceError) as err:
        verify_signature("config", DIGEST, [], public(p256))
    text = str(err.value)
    assert "source config" in text and DIGEST in text and signature_tag(DIGEST) in text
    assert "is not signed" in text and "last verified digest stays" in text


def test_a_signature_by_another_key_is_refused(p256):
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SourceError, match="the public key did not make"):
        verify_signature("config", DIGEST, [layer(other)], public(p256))


def test_an_altered_payload_is_refused(p256):
    good = layer(p256)
    altered = SignatureLayer(good.payload.replace(b"reg.example", b"evil.example"),
                             good.annotations)
    with pytest.raises(SourceError, match="did not make"):
        verify_signature("config", DIGEST, [altered], public(p256))


def test_a_signature_for_another_digest_is_refused(p256):
    with pytest.raises(SourceError, match=f"made for another artifact \\({OTHER}\\)"):
        verify_signature("config", DIGEST, [layer(p256, payload(OTHER))], public(p256))


def test_a_signature_of_another_type_is_refused(p256):
    with pytest.raises(SourceError, match="of type 'attestation'"):
        verify_signature("config", DIGEST, [layer(p256, payload(kind="attestation"))],
                         public(p256))


def test_a_payload_that_is_not_json_is_refused(p256):
    with pytest.raises(SourceError, match="not a cosign simple signing document"):
        verify_signature("config", DIGEST, [layer(p256, b"not json")], public(p256))


def test_a_signature_that_is_not_base64_is_refused(p256):
    bad = SignatureLayer(payload(), {SIGNATURE_ANNOTATION: "***"})
    with pytest.raises(SourceError, match="not base64"):
        verify_signature("config", DIGEST, [bad], public(p256))


def test_one_good_layer_among_several_is_enough(p256):
    other = ec.generate_private_key(ec.SECP256R1())
    verify_signature("config", DIGEST, [layer(other), layer(p256)], public(p256))


def test_a_file_that_is_no_public_key_is_named():
    with pytest.raises(SourceError, match="cosign.pub: not a PEM public key"):
        load_public_key(b"-----BEGIN NOTHING-----\n", "verify.cosign.publicKey cosign.pub")


def test_signature_layers_and_payload_digests():
    manifest = {"layers": [{"digest": "sha256:00", "size": 1},
                           {"digest": "sha256:01", "size": 2,
                            "annotations": {SIGNATURE_ANNOTATION: "x"}}, "junk"]}
    assert [d["digest"] for d in signature_layers(manifest)] == ["sha256:01"]
    assert signature_layers({"layers": "no"}) == []
    data = payload()
    import hashlib
    good = {"size": len(data), "digest": "sha256:" + hashlib.sha256(data).hexdigest()}
    assert payload_matches(data, good)
    assert not payload_matches(data + b" ", good)
    assert signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"
