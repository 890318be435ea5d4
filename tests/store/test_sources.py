"""Data sources against a real HTTP upstream on 127.0.0.1: read-through stores only what verifies."""

from __future__ import annotations

import socket

import pytest

from permastore.protocol import ans104, bundle, merkle
from permastore.sources import FallbackSource, LocalSource, ReadThroughSource, UpstreamError, UpstreamSource
from permastore.sources.scheduler import FetchSettings
from permastore.store import NotFound, Store
from permastore.store.ingest import SMALL_OBJECT_LIMIT
from tests.helpers.keys import seed_wallet

from .conftest import pseudo_random, signed_tx, tags
from .upstream_server import Upstream

BUNDLE_TAGS = tags(Bundle_Format="binary", Bundle_Version="2.0.0")


@pytest.fixture
def upstream_store(tmp_path, jwk):
    opened = Store.open(seed_wallet(tmp_path / "upstream", jwk))
    yield opened
    opened.close()


@pytest.fixture
def upstream(upstream_store):
    server = Upstream(upstream_store)
    yield server
    server.close()


def read_through(store, *upstreams) -> ReadThroughSource:
    return ReadThroughSource(FallbackSource([UpstreamSource(u.url) for u in upstreams]), store)


def segment_files(store) -> int:
    return len(list(store.segments_dir.glob("*.seg")))


def test_l1_tx_is_fetched_verified_stored_and_served_after_upstream_is_gone(store, upstream, upstream_store, rsa_signer):
    data = pseudo_random(SMALL_OBJECT_LIMIT + 3 * merkle.MAX_CHUNK_SIZE + 5, 1)
    tx = signed_tx(rsa_signer, data, tags(App="rt"))
    upstream_store.put_tx(tx, data)
    source = read_through(store, upstream)
    stream = source.get(tx.id)
    assert stream.read_all() == data and stream.verified
    info = store.info(tx.id)
    assert info.kind == "tx" and info.data_root == tx.data_root
    upstream.close()
    assert source.get(tx.id, 10, 20).read_all() == data[10:20]


def test_data_item_is_fetched_by_its_signed_header(store, upstream, upstream_store, ed_signer):
    data = pseudo_random(SMALL_OBJECT_LIMIT + 1000, 2)
    item = ans104.build_item(ed_signer, data, tags(Content_Type="model/x"))
    item_id = upstream_store.put_item(item).id
    stream = read_through(store, upstream).get(item_id)
    assert stream.content_type == "model/x" and stream.size == len(data)
    assert stream.read_all() == data
    assert b"".join(store.item_bytes(item_id)) == item


def test_bundled_item_is_verified_through_its_parent_bundle(store, upstream, upstream_store, ed_signer, rsa_signer):
    inner = ans104.build_item(ed_signer, b"inside a bundle", [])
    payload = bundle.build_bundle([inner])
    tx = signed_tx(rsa_signer, payload, BUNDLE_TAGS)
    upstream_store.put_tx(tx, payload)
    upstream.no_item_headers = True  # like a gateway that only knows the bundle
    item_id = ans104.parse_header(inner).id
    assert read_through(store, upstream).get(item_id).read_all() == b"inside a bundle"
    assert store.info(item_id).bundled_in == tx.id


def test_tampered_bytes_are_refused_and_nothing_is_kept(store, upstream, upstream_store, rsa_signer, ed_signer):
    data = pseudo_random(SMALL_OBJECT_LIMIT + 50_000, 3)
    tx = signed_tx(rsa_signer, data)
    upstream_store.put_tx(tx, data)
    item_id = upstream_store.put_item(ans104.build_item(ed_signer, b"small item data", [])).id
    upstream.tamper = True
    source = read_through(store, upstream)
    for object_id in (tx.id, item_id):
        with pytest.raises(UpstreamError):
            source.get(object_id)
    # No byte of the data is kept; the tx's signed header is (verified alone), its data pending.
    assert store.info(item_id) is None
    assert not store.info(tx.id).data_complete and store.info(tx.id).weave_offset is None
    assert segment_files(store) == 0
    upstream.tamper = False  # a later read fetches the data again
    assert source.get(tx.id).read_all() == data


def test_dropped_connection_resumes_from_the_last_byte(store, upstream, upstream_store, rsa_signer):
    # Large enough (50 chunks) for whole 16-chunk pieces: a smaller object gets smaller pieces.
    data = pseudo_random(3 * SMALL_OBJECT_LIMIT + 2 * merkle.MAX_CHUNK_SIZE, 4)
    tx = signed_tx(rsa_signer, data)
    upstream_store.put_tx(tx, data)
    upstream.drop_after = 1_000_000  # inside the first ranged request (4 MiB)
    assert read_through(store, upstream).get(tx.id).read_all() == data
    spans = [r.removeprefix("bytes=").split("-") for method, path, r in upstream.requests if path == f"/raw/{tx.id}"]
    asked = sum(int(last) + 1 - int(first) for first, last in spans)
    # Only what the cut lost is asked again: the chunks of the cut request after the 3 that came whole.
    piece = FetchSettings().piece_chunks
    assert asked - len(data) == (piece - 3) * merkle.MAX_CHUNK_SIZE
    starts = [int(first) // merkle.MAX_CHUNK_SIZE for first, _ in spans]
    # Resumed 3 chunks into the request that was cut (the first or the second: two run at once).
    assert any(start % piece == 3 for start in starts), starts


def test_upstream_source_ranges_even_when_the_server_ignores_them(upstream, upstream_store):
    data = pseudo_random(300_000, 5)
    object_id = upstream_store.put_data(data).id
    source = UpstreamSource(upstream.url)
    got = source.get(object_id, 1000, 2000)
    assert got.read_all() == data[1000:2000] and not got.verified and got.total_size == len(data)
    upstream.ignore_range = True
    assert source.get(object_id, 250_000).read_all() == data[250_000:]


def test_unknown_everywhere_is_not_found(store, upstream):
    with pytest.raises(NotFound):
        read_through(store, upstream).get("A" * 43)
    with pytest.raises(NotFound):
        LocalSource(store).get("A" * 43)


def test_fallback_skips_a_dead_and_an_empty_upstream(tmp_path, jwk, store, upstream, upstream_store):
    object_id = upstream_store.put_data(b"only on the second upstream").id
    with Store.open(seed_wallet(tmp_path / "empty", jwk)) as empty_store:
        empty = Upstream(empty_store)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens here
        source = ReadThroughSource(
            FallbackSource([UpstreamSource(dead_url, timeout=2), UpstreamSource(empty.url), UpstreamSource(upstream.url)]),
            store,
        )
        assert source.get(object_id).read_all() == b"only on the second upstream"
        empty.close()


def test_bad_upstream_url_is_a_clear_error():
    with pytest.raises(ValueError):
        UpstreamSource("ftp://example")
