"""Signed ANS-104 items and L1 transactions stored under their own IDs; bad ones refused."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from permastore.protocol import ans104, b64url, merkle
from permastore.protocol.errors import InvalidProof, InvalidSignature, MalformedData
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction
from permastore.store import DataMismatch, NotFound
from permastore.store.ingest import SMALL_OBJECT_LIMIT
from tests.helpers.keys import ARWEAVE_VECTORS as VECTORS

from .conftest import pseudo_random, signed_tx, tags

GOAR = VECTORS / "goar"


def segment_count(store) -> int:
    return len(list(store.segments_dir.glob("*.seg")))


def test_goar_item_is_stored_under_its_own_id_and_served_byte_for_byte(store):
    item = (GOAR / "test.item").read_bytes()
    info = store.put_item(io.BytesIO(item))
    assert info.id == "gJAcqxkJIatZHwB3R4wI8Fsmg5eGwI-AjTZ3kWDx3sc"
    assert info.signature_type == 1 and info.kind == "item"
    assert b"".join(store.item_bytes(info.id)) == item
    header, data = ans104.parse_item(item)
    assert store.raw_header(info.id) == item[: header.header_size]
    assert b"".join(store.read(info.id)) == data


@pytest.mark.parametrize("size", [0, 100, SMALL_OBJECT_LIMIT + 100])
def test_ed25519_item_round_trip_and_idempotent(store, ed_signer, size):
    data = pseudo_random(size, 3)
    item = ans104.build_item(ed_signer, data, tags(Content_Type="image/png"), anchor=bytes(32))
    first = store.put_item(item)
    again = store.put_item(io.BytesIO(item))
    assert again == first
    assert first.content_type == "image/png" and first.signature_type == 2
    assert first.anchor == b64url.encode(bytes(32))
    assert b"".join(store.item_bytes(first.id)) == item
    assert store.db.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 1


@pytest.mark.parametrize("size", [10, SMALL_OBJECT_LIMIT + 100])
def test_item_with_tampered_data_is_refused_and_leaves_nothing(store, ed_signer, size):
    item = bytearray(ans104.build_item(ed_signer, pseudo_random(size, 4), []))
    item[-1] ^= 1
    with pytest.raises(InvalidSignature):
        store.put_item(bytes(item))
    assert store.info(ans104.parse_header(bytes(item)).id) is None
    assert segment_count(store) == 0


def test_truncated_item_header_is_a_clear_error(store):
    with pytest.raises(MalformedData):
        store.put_item((GOAR / "test.item").read_bytes()[:300])


def test_l1_tx_with_data_is_verified_against_its_data_root(store, rsa_signer):
    data = pseudo_random(3 * merkle.MAX_CHUNK_SIZE + 1000, 5)
    tx = signed_tx(rsa_signer, data, tags(App="x"))
    info = store.put_tx(tx, io.BytesIO(data))
    assert info.kind == "tx" and info.format == 2 and info.data_root == tx.data_root
    assert b"".join(store.read(tx.id)) == data
    header = json.loads(store.raw_header(tx.id))
    assert Transaction.from_json(header) == tx
    assert store.put_tx(tx, data) == info  # idempotent


def test_l1_tx_with_wrong_data_is_refused(store, rsa_signer):
    data = pseudo_random(SMALL_OBJECT_LIMIT + 5000, 6)
    tx = signed_tx(rsa_signer, data)
    wrong = bytearray(data)
    wrong[SMALL_OBJECT_LIMIT] ^= 1
    with pytest.raises(DataMismatch):
        store.put_tx(tx, bytes(wrong))
    with pytest.raises(DataMismatch):
        store.put_tx(tx, data[:-1])
    assert store.info(tx.id) is None and segment_count(store) == 0


def test_tampered_tx_is_refused(store, rsa_signer):
    tx = signed_tx(rsa_signer, b"abc", tags(App="x"))
    forged = dataclasses.replace(tx, tags=[Tag(b"App", b"y")])
    with pytest.raises(InvalidSignature):
        store.put_tx(forged, b"abc")
    assert store.info(tx.id) is None


def test_mainnet_format_1_and_2_headers_store_and_serve_exact_json(store):
    lines = (VECTORS / "mainnet-tx-headers.jsonl").read_text().splitlines()
    v1 = next(json.loads(line) for line in lines if json.loads(line)["format"] == 1 and json.loads(line)["data"])
    v2 = next(json.loads(line) for line in lines if json.loads(line)["format"] == 2 and json.loads(line)["data_size"] != "0")
    info1 = store.put_tx(Transaction.from_json(v1))
    assert info1.data_complete and b"".join(store.read(v1["id"])) == b64url.decode(v1["data"])
    assert json.loads(store.raw_header(v1["id"])) == v1
    info2 = store.put_tx(Transaction.from_json(v2))
    assert not info2.data_complete  # its chunks have not arrived
    assert json.loads(store.raw_header(v2["id"])) == v2
    with pytest.raises(NotFound):
        list(store.read(v2["id"]))


def test_pending_tx_completes_from_posted_chunks_with_valid_proofs_only(store, rsa_signer):
    data = pseudo_random(2 * merkle.MAX_CHUNK_SIZE + 40_000, 8)
    tx = signed_tx(rsa_signer, data)
    assert not store.put_tx(tx).data_complete
    chunks = merkle.chunks_for(data)
    proofs = merkle.build_proofs(chunks)
    real = [c for c in chunks if c.max_byte_range > c.min_byte_range]
    bad_proof = bytearray(proofs[0].proof)
    bad_proof[0] ^= 1
    with pytest.raises(InvalidProof):
        store.put_chunk(tx.data_root, tx.data_size, proofs[0].offset, data[: real[0].max_byte_range], bytes(bad_proof))
    with pytest.raises(InvalidProof):  # right proof, wrong bytes
        store.put_chunk(tx.data_root, tx.data_size, proofs[0].offset, bytes(real[0].max_byte_range), proofs[0].proof)
    other = pseudo_random(1000, 99)
    other_chunks = merkle.chunks_for(other)
    with pytest.raises(NotFound):  # a valid proof, but no tx has this data_root
        root = merkle.compute_root(other_chunks)
        store.put_chunk(root, len(other), 999, other, merkle.build_proofs(other_chunks)[0].proof)
    for chunk, proof in reversed(list(zip(real, proofs))):
        assert not store.info(tx.id).data_complete
        store.put_chunk(tx.data_root, tx.data_size, proof.offset, data[chunk.min_byte_range : chunk.max_byte_range], proof.proof)
    assert store.info(tx.id).data_complete
    assert b"".join(store.read(tx.id)) == data
    assert store.fsck().ok


def test_pending_tx_completes_when_its_data_is_uploaded_later(store, rsa_signer):
    data = pseudo_random(SMALL_OBJECT_LIMIT + 1, 12)
    tx = signed_tx(rsa_signer, data)
    store.put_tx(tx)
    with pytest.raises(DataMismatch):
        store.put_tx(tx, data[1:])
    assert store.put_tx(tx, data).data_complete
    assert b"".join(store.read(tx.id)) == data
