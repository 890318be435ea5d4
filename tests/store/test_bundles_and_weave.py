"""Bundles unbundled into verified items (no copy); weave offsets, chunk proofs and blocks."""

from __future__ import annotations

import io

import pytest

from permastore.protocol import ans104, bundle, merkle
from permastore.store import NotFound, Query
from permastore.store.ingest import SMALL_OBJECT_LIMIT
from tests.helpers.keys import ARWEAVE_VECTORS as VECTORS

from .conftest import pseudo_random, signed_tx, tags

GOAR = VECTORS / "goar"
BUNDLE_TAGS = tags(Bundle_Format="binary", Bundle_Version="2.0.0")


def disk_bytes(store) -> int:
    return sum(p.stat().st_size for p in store.segments_dir.glob("*.seg"))


def test_goar_bundle_in_an_l1_tx_is_unbundled_into_its_items(store, rsa_signer):
    data = (GOAR / "bundleData").read_bytes()
    tx = signed_tx(rsa_signer, data, BUNDLE_TAGS)
    store.put_tx(tx, data)
    items = {"gJAcqxkJIatZHwB3R4wI8Fsmg5eGwI-AjTZ3kWDx3sc": "test.item", "eR75mpfjPGU80Smo74_UIzy462c9cQwBxRjxsd_Zux0": "test2.item"}
    for id, name in items.items():
        info = store.info(id)
        assert info is not None and info.bundled_in == tx.id
        assert b"".join(store.item_bytes(id)) == (GOAR / name).read_bytes()
    page = store.query(Query(bundled_in=[tx.id], first=10))
    assert {i.id for i in page.items} == set(items)


def test_bundle_items_reference_the_parent_bytes_and_nested_bundles_unbundle(store, ed_signer):
    big = pseudo_random(SMALL_OBJECT_LIMIT + 10_000, 1)
    leaf = ans104.build_item(ed_signer, big, tags(Level="leaf"))
    inner = ans104.build_item(ed_signer, bundle.build_bundle([leaf]), BUNDLE_TAGS)
    outer = bundle.build_bundle([inner, ans104.build_item(ed_signer, b"sibling", [])])
    before = disk_bytes(store)
    parent = store.put_data(io.BytesIO(outer), tags=BUNDLE_TAGS)
    assert disk_bytes(store) - before < len(outer) * 1.01  # the items added no copy
    leaf_id = ans104.parse_header(leaf).id
    inner_id = ans104.parse_header(inner).id
    assert store.info(inner_id).bundled_in == parent.id
    assert store.info(leaf_id).bundled_in == inner_id
    assert b"".join(store.read(leaf_id)) == big
    assert store.read_range(leaf_id, 5000, 10) == big[5000:5010]
    assert store.object_path(leaf_id).read_bytes() == big
    assert store.fsck().ok


def test_a_bad_item_in_a_bundle_is_refused_and_its_siblings_indexed(store, ed_signer):
    good = ans104.build_item(ed_signer, b"good data", [])
    bad = bytearray(ans104.build_item(ed_signer, b"bad data!", []))
    bad[-1] ^= 1
    item = ans104.build_item(ed_signer, bundle.build_bundle([good, bytes(bad)]), BUNDLE_TAGS)
    parent = store.put_item(item)
    assert store.info(ans104.parse_header(good).id).bundled_in == parent.id
    assert store.info(ans104.parse_header(bytes(bad)).id) is None
    assert [r[0] for r in store.last_bundle_refusals] == [ans104.parse_header(bytes(bad)).id]


def test_malformed_bundle_is_stored_as_data_but_not_unbundled(store):
    info = store.put_data(b"\x05" + bytes(40), tags=BUNDLE_TAGS)
    assert b"".join(store.read(info.id)) == b"\x05" + bytes(40)
    assert store.db.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 1


def test_weave_offsets_chunk_proofs_and_chunk_lookup(store, rsa_signer):
    first_data = pseudo_random(3 * merkle.MAX_CHUNK_SIZE, 2)  # ends with an empty chunk
    second_data = pseudo_random(2 * merkle.MAX_CHUNK_SIZE + 50_000, 3)
    first = store.put_tx(signed_tx(rsa_signer, first_data), first_data)
    second = store.put_tx(signed_tx(rsa_signer, second_data), second_data)
    assert first.weave_offset == len(first_data) - 1
    assert second.weave_offset == len(first_data) + len(second_data) - 1
    assert store.weave_size() == len(first_data) + len(second_data)
    proofs = store.chunk_proofs(first.id)
    assert len(proofs) == 3
    for proof in proofs:
        proven = merkle.validate_path(first.data_root, proof.offset, 0, first.data_size, proof.proof)
        assert proven.right_bound == proof.offset + 1
    # Any byte of the second tx resolves to its chunk, with a proof that checks out.
    offset = len(first_data) + merkle.MAX_CHUNK_SIZE + 10
    found = store.chunk_at_weave_offset(offset)
    assert found.tx_id == second.id and found.offset_in_tx == merkle.MAX_CHUNK_SIZE
    assert found.chunk == second_data[merkle.MAX_CHUNK_SIZE : 2 * merkle.MAX_CHUNK_SIZE]
    proven = merkle.validate_path(second.data_root, found.offset_in_tx, 0, second.data_size, found.data_path)
    assert proven.chunk_size == len(found.chunk)
    assert store.chunk_at_weave_offset(0).chunk == first_data[: merkle.MAX_CHUNK_SIZE]
    with pytest.raises(NotFound):
        store.chunk_at_weave_offset(store.weave_size())


def test_mining_gives_heights_and_height_queries_see_them(store, rsa_signer):
    tx = store.put_tx(signed_tx(rsa_signer, b"mined data", tags(App="blocks")), b"mined data")
    item = store.put_data(b"an item", tags=tags(App="blocks"))
    assert store.current_block() is None
    genesis = store.mine_block(timestamp=1000)
    assert (genesis.height, genesis.previous, genesis.tx_ids) == (0, "", [tx.id])
    later = store.put_data(b"later", tags=tags(App="blocks"))
    second = store.mine_block(timestamp=1100)
    assert second.previous == genesis.indep_hash and second.height == 1 and second.tx_ids == []
    assert store.info(item.id).height == 0 and store.info(later.id).block_hash == second.indep_hash
    assert store.block(height=1) == second == store.block(indep_hash=second.indep_hash) == store.current_block()
    page = store.query(Query(tags=[("App", ["blocks"])], min_height=1, max_height=1))
    assert [i.id for i in page.items] == [later.id]
