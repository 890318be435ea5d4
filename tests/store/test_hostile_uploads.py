"""Issue 7 point 1 (one upload bricks the node) and point 5 (other ways a stranger's bytes
reach the store), through the Store API on a real data folder."""

from __future__ import annotations

import sqlite3
import struct

import pytest

from permastore.protocol import ans104, bundle
from permastore.protocol.errors import InvalidSignature, LimitExceeded
from permastore.protocol.tags import Tag
from permastore.store import Store
from permastore.store.bundles import Unbundler

from .hostile import (
    BAD_RSA_OWNERS,
    BUNDLE_TAGS,
    bundle_item,
    forged_rsa_item,
    forged_rsa_tx,
    item_id,
    mixed_bundle,
    tx_from,
)


def simulate_crash_during_unbundling(data_dir, bundle_id: str) -> None:
    """Put the folder in the state a crash leaves: the bundle committed 'pending', its items not indexed."""
    conn = sqlite3.connect(data_dir / "index.sqlite")
    with conn:
        conn.execute("UPDATE objects SET bundle_state = 'pending' WHERE id = ?", (bundle_id,))
        conn.execute("DELETE FROM objects WHERE bundled_in = ?", (bundle_id,))
        conn.execute("DELETE FROM bundle_refusals")
    conn.close()


@pytest.mark.parametrize("owner", BAD_RSA_OWNERS.values(), ids=BAD_RSA_OWNERS.keys())
def test_malformed_rsa_owner_in_a_tx_or_an_item_is_an_invalid_signature(store, owner):
    with pytest.raises(InvalidSignature):
        store.put_tx(tx_from(forged_rsa_tx(owner)))
    with pytest.raises(InvalidSignature):
        store.put_item(forged_rsa_item(owner))
    assert store.fsck().objects_checked == 0


def test_bad_items_in_a_valid_bundle_are_refused_alone_and_their_siblings_indexed(store, ed_signer):
    signed_bundle, good, bad = mixed_bundle(ed_signer)
    info = store.put_item(signed_bundle)
    assert info.id == item_id(signed_bundle)
    for item in good:
        stored = store.info(item_id(item))
        assert stored is not None and stored.bundled_in == info.id
        assert b"".join(store.item_bytes(stored.id)) == item
    refused = dict(store.last_bundle_refusals)
    assert set(refused) == {item_id(item) for item in bad}
    assert all("signature" in reason for reason in refused.values())
    for item in bad:
        assert store.info(item_id(item)) is None
        [(bundle_id, _, reason)] = store.refusals(item_id(item))
        assert bundle_id == info.id and "signature" in reason
    report = store.fsck()
    assert report.ok and report.refused_total == len(bad)
    assert {row[1] for row in report.refused} == {item_id(item) for item in bad}


def test_a_bundle_left_pending_with_bad_items_never_stops_the_store_from_opening(data_dir, ed_signer):
    signed_bundle, good, bad = mixed_bundle(ed_signer)
    with Store.open(data_dir) as store:
        bundle_id = store.put_item(signed_bundle).id
    simulate_crash_during_unbundling(data_dir, bundle_id)
    for _ in range(2):  # and again: an open that resumed it left it done
        with Store.open(data_dir) as store:
            assert [store.info(item_id(item)) is not None for item in good] == [True] * 3
            assert {r[1] for r in store.refusals(bundle_id=bundle_id)} == {item_id(item) for item in bad}
            assert store.fsck().ok


def test_an_unexpected_error_while_unbundling_at_open_is_recorded_and_the_store_opens(data_dir, ed_signer, monkeypatch):
    signed_bundle, good, _ = mixed_bundle(ed_signer)
    with Store.open(data_dir) as store:
        bundle_id = store.put_item(signed_bundle).id
    simulate_crash_during_unbundling(data_dir, bundle_id)
    real = Unbundler._verified_entry

    def flaky(self, parent, entry, window):
        if entry.id == item_id(good[1]):
            raise RuntimeError("simulated bug")
        return real(self, parent, entry, window)

    monkeypatch.setattr(Unbundler, "_verified_entry", flaky)
    with Store.open(data_dir) as store:
        assert store.info(item_id(good[0])) is not None and store.info(item_id(good[1])) is None
        [(_, _, reason)] = store.refusals(item_id(good[1]))
        assert "unexpected error" in reason and "simulated bug" in reason

    def broken_index(read_at, size):
        raise RuntimeError("index reader exploded")

    simulate_crash_during_unbundling(data_dir, bundle_id)
    monkeypatch.setattr(bundle, "iter_bundle_index", broken_index)
    with Store.open(data_dir) as store:
        report = store.fsck()
        assert not report.ok
        assert report.failures == [(bundle_id, -1, "unbundling failed: RuntimeError: index reader exploded")]
        assert b"".join(store.item_bytes(bundle_id)) == signed_bundle  # the bundle itself is intact


def test_an_unexpected_error_while_unbundling_does_not_fail_the_put(store, ed_signer, monkeypatch):
    signed_bundle, good, _ = mixed_bundle(ed_signer)

    def broken_index(read_at, size):
        raise MemoryError("pretend")

    monkeypatch.setattr(bundle, "iter_bundle_index", broken_index)
    info = store.put_item(signed_bundle)
    assert store.info(info.id) is not None and store.info(item_id(good[0])) is None
    assert store.last_bundle_refusals == [(info.id, "unbundling failed: MemoryError: pretend")]


def test_a_bad_item_inside_a_nested_bundle_is_refused_and_recorded_under_that_bundle(store, ed_signer):
    inner_good = ans104.build_item(ed_signer, b"inner good", [])
    inner_bad = forged_rsa_item(bytes(512), b"inner bad")
    inner = bundle_item(ed_signer, [inner_bad, inner_good])
    outer_good = ans104.build_item(ed_signer, b"outer good", [])
    outer = bundle_item(ed_signer, [outer_good, inner])
    store.put_item(outer)
    assert store.info(item_id(inner_good)).bundled_in == item_id(inner)
    assert store.info(item_id(outer_good)) is not None
    assert store.refusals(item_id(inner_bad))[0][0] == item_id(inner)
    assert [r[0] for r in store.last_bundle_refusals] == [item_id(inner_bad)]


def test_a_bundle_of_many_empty_entries_is_refused_item_by_item_in_bounded_memory(store):
    count = 5000
    index = count.to_bytes(32, "little") + b"".join(
        (0).to_bytes(32, "little") + i.to_bytes(32, "little") for i in range(count)
    )
    info = store.put_data(index, tags=BUNDLE_TAGS)
    assert len(store.last_bundle_refusals) == 1000  # kept in memory: the first 1000
    assert len(store.refusals(bundle_id=info.id)) == count  # every one recorded
    assert store.fsck().refused_total == count


def test_bundle_entries_with_huge_declared_sizes_or_counts_are_refused_without_reading_them(store, ed_signer):
    good = ans104.build_item(ed_signer, b"x", [])
    huge_count = (2**200).to_bytes(32, "little") + bytes(64)
    info = store.put_data(huge_count, tags=BUNDLE_TAGS)
    [(refused_id, reason)] = store.last_bundle_refusals
    assert refused_id == info.id and "declares" in reason
    past_end = (1).to_bytes(32, "little") + (2**64).to_bytes(32, "little") + bytes(32) + good
    info = store.put_data(past_end, tags=BUNDLE_TAGS)
    assert "past the end" in store.last_bundle_refusals[0][1]
    # An item whose header declares more tag bytes than ANS-104 allows, inside a bundle.
    header = bytearray(good[: ans104.parse_header(good).header_size])
    counts_at = len(header) - 16
    header[counts_at:] = struct.pack("<QQ", 2**62, 2**62)
    entry = bytes(header) + b"x"
    info = store.put_data(bundle.bundle_header([(bytes(32), len(entry))]) + entry, tags=BUNDLE_TAGS)
    [(_, reason)] = store.last_bundle_refusals
    assert "declares" in reason


def test_put_item_streaming_refuses_a_huge_declared_tag_block_before_reading_it(store, ed_signer):
    item = bytearray(ans104.build_item(ed_signer, b"x", [Tag(b"a", b"b")]))
    size = ans104.parse_header(bytes(item)).header_size
    tags_len = len(ans104.parse_header(bytes(item)).raw_tags)
    struct.pack_into("<QQ", item, size - tags_len - 16, 1, 2**40)

    class EndlessAfterHeader:
        """A body that would never end: the refusal must come from the header alone."""

        def __init__(self):
            self.sent = 0

        def read(self, n):
            self.sent += n
            return bytes(item[:size]) if self.sent == n else bytes(n)

    with pytest.raises(LimitExceeded):
        store.put_item(EndlessAfterHeader())


def test_items_around_the_read_window_size_unbundle_with_their_exact_bytes(store, ed_signer):
    from permastore.store.bundles import WINDOW_BYTES

    from .conftest import pseudo_random

    sizes = [10, WINDOW_BYTES - 300, 5, WINDOW_BYTES + 1, 3 * WINDOW_BYTES, 1]
    items = [ans104.build_item(ed_signer, pseudo_random(size, size), []) for size in sizes]
    store.put_item(bundle_item(ed_signer, items))
    assert store.last_bundle_refusals == []
    for item in items:
        assert b"".join(store.item_bytes(item_id(item))) == item
