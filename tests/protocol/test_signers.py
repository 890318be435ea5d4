import hashlib

import coincurve
import pytest
from Crypto.Hash import keccak

from permastore.protocol import wallet
from permastore.protocol.errors import MalformedData
from permastore.protocol.signers import (
    Ed25519Signer,
    EthereumSigner,
    RsaSigner,
    eip191_hash,
    verify_signature,
)

MESSAGE = hashlib.sha384(b"message").digest()


def _signers(test_jwk):
    return [
        RsaSigner(test_jwk),
        RsaSigner(test_jwk, salt_length=0),
        Ed25519Signer(bytes(range(32))),
        EthereumSigner(hashlib.sha256(b"eth key").digest()),
    ]


def test_each_signer_round_trips_and_rejects_changes(test_jwk):
    for signer in _signers(test_jwk):
        signature = signer.sign(MESSAGE)
        assert verify_signature(signer.signature_type, signer.owner, MESSAGE, signature)
        assert not verify_signature(signer.signature_type, signer.owner, MESSAGE + b"x", signature)
        flipped = bytearray(signature)
        flipped[5] ^= 1
        assert not verify_signature(signer.signature_type, signer.owner, MESSAGE, bytes(flipped))
        other_owner = bytearray(signer.owner)
        other_owner[-3] ^= 1
        assert not verify_signature(signer.signature_type, bytes(other_owner), MESSAGE, signature)


def test_owner_and_signature_sizes(test_jwk):
    sizes = {1: (512, 512), 2: (32, 64), 3: (65, 65)}
    for signer in _signers(test_jwk):
        assert (len(signer.owner), len(signer.sign(MESSAGE))) == sizes[signer.signature_type]


def test_ethereum_is_eip191_personal_sign():
    key = hashlib.sha256(b"eth key").digest()
    signature = EthereumSigner(key).sign(MESSAGE)
    assert signature[64] in (27, 28)
    digest = keccak.new(digest_bits=256, data=b"\x19Ethereum Signed Message:\n48" + MESSAGE).digest()
    assert eip191_hash(MESSAGE) == digest
    public = coincurve.PublicKey.from_signature_and_message(
        signature[:64] + bytes([signature[64] - 27]), digest, hasher=None
    )
    assert public.format(compressed=False) == coincurve.PrivateKey(key).public_key.format(compressed=False)
    # A raw recovery id (0/1) is accepted as well as 27/28.
    raw = signature[:64] + bytes([signature[64] - 27])
    assert verify_signature(3, EthereumSigner(key).owner, MESSAGE, raw)
    assert not verify_signature(3, EthereumSigner(key).owner, MESSAGE, signature[:64] + b"\x05")


def test_rsa_salt_zero_is_deterministic(test_jwk):
    signer = RsaSigner(test_jwk, salt_length=0)
    assert signer.sign(MESSAGE) == signer.sign(MESSAGE)


def test_unknown_signature_type():
    with pytest.raises(MalformedData):
        verify_signature(9, b"", b"", b"")


def test_bad_keys():
    with pytest.raises(MalformedData):
        Ed25519Signer(b"short")
    with pytest.raises(MalformedData):
        EthereumSigner(b"short")
    with pytest.raises(MalformedData):
        RsaSigner({"kty": "EC"})
    with pytest.raises(MalformedData):
        RsaSigner({"kty": "RSA", "n": "AQAB", "e": "AQAB"})


def test_wallet_address_of_fixture_key(test_jwk):
    owner = wallet.jwk_owner(test_jwk)
    assert wallet.address_of(owner) == "fOVzBRTBnyt4VrUUYadBH8yras_-jhgpmNgg-5b3vEw"


def test_generate_jwk_signs_and_verifies():
    jwk = wallet.generate_jwk()
    assert jwk["kty"] == "RSA" and jwk["e"] == "AQAB"
    owner = wallet.jwk_owner(jwk)
    assert len(owner) == 512
    signer = RsaSigner(jwk)
    assert signer.owner == owner
    assert verify_signature(1, owner, MESSAGE, signer.sign(MESSAGE))
    with pytest.raises(MalformedData):
        wallet.jwk_owner({})


def test_ethereum_high_s_twin_is_rejected():
    from permastore.protocol.signers import SECP256K1_ORDER

    signer = EthereumSigner(hashlib.sha256(b"eth key").digest())
    signature = signer.sign(MESSAGE)
    s = int.from_bytes(signature[32:64], "big")
    twin_v = 27 + (1 - (signature[64] - 27))
    twin = signature[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big") + bytes([twin_v])
    # The twin is mathematically valid (it recovers the same key) but not canonical.
    recovered = coincurve.PublicKey.from_signature_and_message(
        twin[:64] + bytes([twin_v - 27]), eip191_hash(MESSAGE), hasher=None
    )
    assert recovered.format(compressed=False) == signer.owner
    assert not verify_signature(3, signer.owner, MESSAGE, twin)
