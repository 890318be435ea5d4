"""Issue 7 point 1: a malformed key is InvalidSignature (or False from verify_signature), never
another exception. Before the fix an RSA owner of zero bytes raised ValueError("n must be >= 3")."""

from __future__ import annotations

import hashlib
import random
import struct

import pytest

from permastore.protocol import ans104, b64url
from permastore.protocol.deephash import BlobHasher
from permastore.protocol.errors import InvalidSignature
from permastore.protocol.signers import ARWEAVE, ED25519, ETHEREUM, verify_signature
from permastore.protocol.tx import Transaction, verify

RNG = random.Random(7)
BAD_RSA_OWNERS = [
    bytes(512),
    (1).to_bytes(512, "big"),
    (2).to_bytes(512, "big"),
    (4).to_bytes(512, "big"),  # even
    (65537).to_bytes(512, "big"),  # e >= n
    b"\xff" * 512,
    b"\x01",
    RNG.randbytes(300),
    *[RNG.randbytes(512) for _ in range(20)],
]


@pytest.mark.parametrize("owner", BAD_RSA_OWNERS, ids=lambda o: f"{len(o)}B-{o[:2].hex()}-{o[-1]}")
def test_malformed_rsa_owner_does_not_verify_and_does_not_raise(owner):
    for signature in (bytes(len(owner)), b"\xff" * len(owner), RNG.randbytes(len(owner))):
        assert verify_signature(ARWEAVE, owner, b"message", signature) is False


def test_rsa_owner_past_4096_bits_is_refused_without_building_a_key():
    assert verify_signature(ARWEAVE, b"\xff" * 1024, b"m", b"\x01" * 1024) is False


@pytest.mark.parametrize("owner", [bytes(32), b"\xff" * 32, b"\x01" + bytes(31), RNG.randbytes(32)])
def test_malformed_ed25519_key_does_not_verify(owner):
    assert verify_signature(ED25519, owner, b"m", RNG.randbytes(64)) is False
    assert verify_signature(ED25519, owner[:31], b"m", RNG.randbytes(64)) is False


@pytest.mark.parametrize("signature", [bytes(65), b"\xff" * 65, bytes(64) + b"\x1b", RNG.randbytes(65)])
def test_malformed_ethereum_signature_does_not_verify(signature):
    for owner in (bytes(65), b"\x04" + RNG.randbytes(64), b"\x04" + bytes(64)):
        assert verify_signature(ETHEREUM, owner, b"m", signature) is False


def _forged_item(owner: bytes) -> bytes:
    signature = hashlib.sha512(b"sig").digest() * 8
    return struct.pack("<H", 1) + signature + owner + b"\x00\x00" + struct.pack("<QQ", 0, 0) + b"data"


@pytest.mark.parametrize("owner", BAD_RSA_OWNERS[:6], ids=lambda o: o[-3:].hex())
def test_type_1_item_with_malformed_owner_is_invalid_signature(owner):
    item = _forged_item(owner)
    header, data = ans104.parse_item(item)
    hasher = BlobHasher()
    hasher.update(data)
    with pytest.raises(InvalidSignature):
        ans104.verify_header(header, hasher.digest())
    with pytest.raises(InvalidSignature):
        ans104.verify_item(item)


@pytest.mark.parametrize("owner", BAD_RSA_OWNERS[:6] + [b"\x07" * 600], ids=lambda o: f"{len(o)}-{o[-3:].hex()}")
def test_format_2_tx_with_malformed_owner_is_invalid_signature(owner):
    signature = b"\x01" * len(owner)
    tx = Transaction.from_json(
        {
            "format": 2,
            "id": b64url.encode(hashlib.sha256(signature).digest()),
            "owner": b64url.encode(owner),
            "signature": b64url.encode(signature),
            "last_tx": "",
            "reward": "0",
        }
    )
    with pytest.raises(InvalidSignature):
        verify(tx)
