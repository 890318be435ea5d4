"""Issue 7 point 13: a tampered copy of a stored object is refused even though its ID is known,
and ECDSA txs are stored and served with the JSON Arweave sends."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import pytest

from permastore.protocol import ans104, b64url
from permastore.protocol.errors import InvalidSignature, MalformedData
from permastore.protocol.signers import Secp256k1Signer
from permastore.protocol.tags import Tag
from permastore.protocol.tx import SECP256K1_KEY, Transaction, sign
from permastore.store import Conflict, DataMismatch, Query

from .conftest import pseudo_random, signed_tx
from .hostile import flipped

ECDSA_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "vectors" / "ario" / "signed_ecdsa_tx.json"


def test_a_tampered_copy_of_a_stored_item_is_refused(store, ed_signer):
    item = ans104.build_item(ed_signer, b"the stored bytes", [Tag(b"App", b"x")])
    info = store.put_item(item)
    header_size = ans104.parse_header(item).header_size
    for tampered in (flipped(item, -1), item + b"!", item[:-1], flipped(item, header_size - 2)):
        with pytest.raises((InvalidSignature, MalformedData)):
            store.put_item(tampered)
    assert store.put_item(item) == info  # the real copy is still idempotent
    assert b"".join(store.item_bytes(info.id)) == item


def test_a_tampered_copy_of_a_large_stored_item_is_refused_while_streaming(store, ed_signer):
    data = pseudo_random(6 * 1024 * 1024, 3)
    item = ans104.build_item(ed_signer, data, [])
    store.put_item(io.BytesIO(item))
    with pytest.raises(InvalidSignature):
        store.put_item(io.BytesIO(flipped(item, -100)))
    assert b"".join(store.read(ans104.parse_header(item).id)) == data


def test_a_known_tx_with_other_data_is_refused(store, rsa_signer):
    data = b"the real data of this tx"
    tx = signed_tx(rsa_signer, data)
    store.put_tx(tx, data)
    with pytest.raises(DataMismatch):
        store.put_tx(tx, b"the fake data of this tx")
    with pytest.raises(DataMismatch):
        store.put_tx(tx, data + b"more")
    assert store.put_tx(tx, data).id == tx.id and b"".join(store.read(tx.id)) == data


def test_a_known_ecdsa_tx_with_other_signed_fields_is_refused(store):
    """A same-ID variant of an ECDSA tx verifies (it recovers another owner): only the
    comparison with the stored tx can refuse it."""
    genuine = json.loads(ECDSA_FIXTURE.read_text())
    info = store.put_tx(Transaction.from_json(genuine))
    assert info.signature_type == SECP256K1_KEY
    for field, value in [("quantity", "2"), ("reward", "1"), ("tags", [])]:
        try:
            variant = Transaction.from_json(dict(genuine, **{field: value}))
        except InvalidSignature:
            continue
        with pytest.raises(Conflict):
            store.put_tx(variant)
        with pytest.raises(Conflict):
            store.check_known_tx(variant)
    assert json.loads(store.raw_header(info.id)) == genuine


def test_ecdsa_fixture_is_stored_with_its_recovered_owner_and_exact_json(store):
    genuine = json.loads(ECDSA_FIXTURE.read_text())
    tx = Transaction.from_json(genuine)
    info = store.put_tx(tx)
    assert info.owner == tx.owner and len(info.owner) == 33
    assert info.owner_address == tx.owner_address
    assert json.loads(store.raw_header(info.id)) == genuine
    page = store.query(Query(owners=[tx.owner_address]))
    assert [item.id for item in page.items] == [tx.id]


def test_a_freshly_signed_ecdsa_tx_with_data_is_stored_and_read_back(store):
    signer = Secp256k1Signer(bytes(range(1, 33)))
    data = pseudo_random(300_000, 5)
    tx = sign(Transaction(format=2, data=data, tags=[Tag(b"Content-Type", b"application/octet-stream")]), signer)
    header = dataclasses.replace(tx, data=b"")
    info = store.put_tx(Transaction.from_json(header.to_json()), data)
    assert info.data_complete and b"".join(store.read(tx.id)) == data
    assert info.owner_address == b64url.encode(hashlib.sha256(signer.owner).digest())
