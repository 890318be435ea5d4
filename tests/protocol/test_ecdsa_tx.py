"""secp256k1 format-2 transactions (Arweave fork 2.9): owner recovered from the signature.

Known answers: `fixtures/vectors/ario/signed_ecdsa_tx.json` (a signed ECDSA tx, see the
vectors README), and ar-io-node's own test wallet for owner recovery
(`src/lib/ecdsa-public-key-recover.test.ts`: that private key's recovered owner is
A6W_3e2W... and its address Z7RxkVjL...).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from permastore.protocol import b64url
from permastore.protocol.errors import InvalidSignature, LimitExceeded, MalformedData
from permastore.protocol.signers import SECP256K1_ORDER, Secp256k1Signer, recover_secp256k1
from permastore.protocol.tags import Tag
from permastore.protocol.tx import (
    RSA_KEY,
    SECP256K1_KEY,
    Transaction,
    id_of,
    sign,
    signature_data,
    verify,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "vectors" / "ario" / "signed_ecdsa_tx.json"
AR_IO_KEY = "xwYu-R8XSMWYAxNrQQ5reE-pcy7f0jWgiNer-jtHDT8"
AR_IO_OWNER = "A6W_3e2WurFBBP-ZUIdsOpqxwVcnvNiJFG-xcQ_9odjl"
AR_IO_ADDRESS = "Z7RxkVjLHgAniUGeEpjnaLuSYEK5RKk2Uij497DawmQ"


@pytest.fixture
def fixture_json() -> dict:
    return json.loads(FIXTURE.read_text())


def test_fixture_verifies_and_round_trips_exactly(fixture_json):
    tx = Transaction.from_json(fixture_json)
    verify(tx)
    assert tx.id == "CODy9eol1Y70rm42BPucVxvacAXqfgm-Ktn6t-KqfTo"
    assert tx.signature_type == SECP256K1_KEY
    assert len(tx.owner) == 33 and tx.owner[0] in (2, 3)  # compressed public key
    assert tx.owner_address == b64url.encode(hashlib.sha256(tx.owner).digest())
    assert tx.tags == [Tag(b"Test", b"ecdsa-tx")] and tx.quantity == 1
    assert b64url.encode(tx.target) == "Qa8AAZv-sEhQRIm7xZr3CVLtlzIH8NezaY0GZhURcAc"
    assert tx.to_json() == fixture_json
    assert list(tx.to_json()) == list(fixture_json)  # same fields in the node's order


def test_flipped_signature_byte_fails(fixture_json):
    signature = bytearray(b64url.decode(fixture_json["signature"]))
    signature[10] ^= 1
    with pytest.raises(InvalidSignature):  # the ID no longer matches
        verify(Transaction.from_json(dict(fixture_json, signature=b64url.encode(bytes(signature)))))
    genuine = Transaction.from_json(fixture_json)
    relabelled = dataclasses.replace(genuine, signature=bytes(signature), id=id_of(bytes(signature)))
    with pytest.raises(InvalidSignature):  # the owner it claims is not what this signature recovers
        verify(relabelled)


def test_a_changed_field_recovers_another_owner(fixture_json):
    """Any content recovers *some* key: a changed field is a different tx of a different owner,
    never the fixture's owner's (the store compares known IDs' signed fields for that reason)."""
    genuine = Transaction.from_json(fixture_json)
    for field, value in [("quantity", "2"), ("reward", "1"), ("tags", []), ("target", "")]:
        try:
            variant = Transaction.from_json(dict(fixture_json, **{field: value}))
        except InvalidSignature:
            continue  # nothing recovers at all: refused outright
        assert variant.owner_address != genuine.owner_address
        with pytest.raises(InvalidSignature):
            verify(dataclasses.replace(variant, owner=genuine.owner))


def test_high_s_twin_and_ethereum_style_v_are_refused(fixture_json):
    genuine = Transaction.from_json(fixture_json)
    sig = genuine.signature
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (SECP256K1_ORDER - s).to_bytes(32, "big") + bytes([sig[64] ^ 1])
    assert recover_secp256k1(signature_data(genuine), twin) is None  # would be a second ID for the same tx
    v27 = sig[:64] + bytes([sig[64] + 27])
    assert recover_secp256k1(signature_data(genuine), v27) is None
    for bad in (twin, v27, sig[:64], bytes(65)):
        with pytest.raises(InvalidSignature):
            Transaction.from_json(dict(fixture_json, signature=b64url.encode(bad), id=id_of(bad)))


def test_ar_io_node_wallet_recovers_its_known_owner_and_address():
    signer = Secp256k1Signer(b64url.decode(AR_IO_KEY))
    assert b64url.encode(signer.owner) == AR_IO_OWNER
    tx = sign(Transaction(format=2, data=b"Test data for signature recovery", reward=1), signer)
    doc = tx.to_json()
    assert doc["owner"] == ""
    parsed = Transaction.from_json(doc)
    verify(parsed)
    assert b64url.encode(parsed.owner) == AR_IO_OWNER and parsed.owner_address == AR_IO_ADDRESS


def test_denomination_is_signed_and_sent_only_when_set():
    signer = Secp256k1Signer(bytes(range(1, 33)))
    tx = sign(Transaction(format=2, quantity=5, reward=7, denomination=1), signer)
    doc = tx.to_json()
    assert doc["denomination"] == "1" and list(doc)[-1] == "denomination"
    verify(Transaction.from_json(doc))
    stripped = Transaction.from_json({k: v for k, v in doc.items() if k != "denomination"})
    assert stripped.owner_address != tx.owner_address  # unsigned without it: another owner recovers
    assert "denomination" not in sign(Transaction(format=2, reward=7), signer).to_json()


def test_denomination_changes_an_rsa_signature_too(test_jwk):
    from permastore.protocol.signers import RsaSigner

    tx = sign(Transaction(format=2, reward=7, denomination=2), RsaSigner(test_jwk))
    verify(Transaction.from_json(tx.to_json()))
    with pytest.raises(InvalidSignature):
        verify(dataclasses.replace(tx, denomination=0))
    v1 = sign(Transaction(format=1, data=b"v1", data_size=2, reward=7, denomination=1), RsaSigner(test_jwk))
    verify(Transaction.from_json(v1.to_json()))
    assert v1.signature_type == RSA_KEY


@pytest.mark.parametrize("value", ["0", "-1", "01", "16777216", 1.0, ""])
def test_bad_denomination_is_refused(fixture_json, value):
    with pytest.raises((MalformedData, LimitExceeded)):
        Transaction.from_json(dict(fixture_json, denomination=value))


def test_empty_owner_needs_format_2_and_a_65_byte_signature(fixture_json):
    with pytest.raises(InvalidSignature):
        Transaction.from_json(dict(fixture_json, format=1))
    with pytest.raises(MalformedData):
        sign(Transaction(format=1), Secp256k1Signer(bytes(range(1, 33))))
    rsa_sized = b"\x01" * 512
    with pytest.raises(InvalidSignature):
        Transaction.from_json(dict(fixture_json, signature=b64url.encode(rsa_sized), id=id_of(rsa_sized)))


def test_secp256k1_signer_is_not_an_ans104_signer():
    from permastore.protocol import ans104

    with pytest.raises(MalformedData):
        ans104.build_item(Secp256k1Signer(bytes(range(1, 33))), b"x", [])
