"""Plain uploads: wrapped in signed data items, stored as deduplicated chunks, read back exactly."""

from __future__ import annotations

import io
import mmap
import os
import stat

import pytest

from permastore.protocol import ans104
from permastore.protocol.deephash import deep_hash
from permastore.protocol.errors import InvalidSignature, LimitExceeded
from permastore.protocol.merkle import MAX_CHUNK_SIZE
from permastore.protocol.tags import Tag
from permastore.store import NotFound, Store, StoreError
from permastore.store.ingest import SMALL_OBJECT_LIMIT

from .conftest import pseudo_random, tags

SIZES = [0, 1, 1000, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1, SMALL_OBJECT_LIMIT, SMALL_OBJECT_LIMIT + 1, 9_000_001]


def disk_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*.seg"))


@pytest.mark.parametrize("size", [size for size in SIZES if size > MAX_CHUNK_SIZE])
def test_put_data_past_one_chunk_is_a_chunk_provable_l1_tx(store, size):
    import json

    from permastore.protocol import merkle
    from permastore.protocol.tx import Transaction, verify

    data = pseudo_random(size, size)
    info = store.put_data(io.BytesIO(data), tags=tags(App_Name="test"), content_type="application/x-test")
    assert b"".join(store.read(info.id)) == data
    assert info.kind == "tx" and info.format == 2 and info.data_size == size
    tx = Transaction.from_json(json.loads(store.raw_header(info.id)))
    verify(tx)  # signed by the node wallet
    assert tx.data_root == merkle.compute_root(merkle.chunks_for(data)) == info.data_root
    assert info.weave_offset == store.weave_size() - 1  # weave bytes given at once: the data is here
    for proof, _chunk in zip(store.chunk_proofs(info.id), merkle.chunks_for(data)):
        merkle.validate_path(tx.data_root, proof.offset, 0, size, proof.proof)
    assert [(t.name, t.value) for t in tx.tags] == [(b"App-Name", b"test"), (b"Content-Type", b"application/x-test")]


@pytest.mark.parametrize("size", [size for size in SIZES if size <= MAX_CHUNK_SIZE])
def test_put_data_round_trips_and_is_a_verifiable_data_item(store, size):
    data = pseudo_random(size, size)
    info = store.put_data(io.BytesIO(data), tags=tags(App_Name="test"), content_type="application/x-test")
    assert b"".join(store.read(info.id)) == data
    assert info.kind == "item" and info.data_size == size
    assert info.content_type == "application/x-test"
    assert info.owner_address == ans104.parse_header(store.raw_header(info.id)).owner_address
    # The stored header plus data is a complete item whose signature verifies.
    item = b"".join(store.item_bytes(info.id))
    header = ans104.verify_item(item)
    assert header.id == info.id
    assert [(t.name, t.value) for t in header.tags] == [(b"App-Name", b"test"), (b"Content-Type", b"application/x-test")]


def test_unknown_id_is_not_found(store):
    with pytest.raises(NotFound):
        list(store.read("A" * 43))
    assert store.info("A" * 43) is None


def test_ranges_are_exact_anywhere_including_across_chunks(store):
    data = pseudo_random(3 * MAX_CHUNK_SIZE + 12345, 7)
    for info in (store.put_data(data), store.put_data(data[:100_000])):
        whole = data[: info.data_size]
        for start, length in [(0, 1), (5, 100), (MAX_CHUNK_SIZE - 3, 10), (MAX_CHUNK_SIZE * 2, MAX_CHUNK_SIZE + 9),
                              (info.data_size - 1, 10), (info.data_size, 5), (info.data_size + 100, 5)]:  # fmt: skip
            assert store.read_range(info.id, start, length) == whole[start : start + length], (start, length)
    with pytest.raises(StoreError):
        store.read_range(info.id, -1, 5)


def test_range_read_does_not_read_from_the_start(store, monkeypatch):
    data = pseudo_random(10 * MAX_CHUNK_SIZE, 3)
    info = store.put_data(data)
    loaded = []
    original = store.chunks.load
    monkeypatch.setattr(store.chunks, "load", lambda id, row: loaded.append(row["idx"]) or original(id, row))
    assert store.read_range(info.id, 7 * MAX_CHUNK_SIZE + 10, 100) == data[7 * MAX_CHUNK_SIZE + 10 :][:100]
    assert loaded == [7]


def test_same_data_twice_is_stored_once(store, data_dir):
    data = pseudo_random(6 * 1024 * 1024, 11)
    first = store.put_data(data)
    used = disk_bytes(data_dir)
    second = store.put_data(io.BytesIO(data))
    assert first.id != second.id  # two signatures, two items
    assert disk_bytes(data_dir) == used  # ...over the same chunks
    assert used < len(data) * 1.01
    assert b"".join(store.read(second.id)) == data
    # Both are plain files without a copy: the one dedicated segment.
    assert store.object_path(first.id) == store.object_path(second.id)


def test_compressible_small_objects_are_compressed_and_random_ones_are_not(store, data_dir):
    text = b"the same words again and again " * 20_000
    store.put_data(text)
    assert disk_bytes(data_dir) < len(text) / 5
    before = disk_bytes(data_dir)
    noise = pseudo_random(500_000, 5)
    info = store.put_data(noise)
    assert disk_bytes(data_dir) - before == len(noise)  # raw: zstd would not save 10%
    assert b"".join(store.read(info.id)) == noise


def test_large_object_path_is_the_object_itself_without_copy(store, data_dir):
    data = pseudo_random(SMALL_OBJECT_LIMIT + 5 * MAX_CHUNK_SIZE + 17, 9)
    info = store.put_data(io.BytesIO(data))
    path = store.object_path(info.id)
    assert path.parent == data_dir / "segments"
    assert not (data_dir / "views" / info.id).exists()
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert mapped[:] == data
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444  # sealed


def _with_repeats(seed: int) -> bytes:
    """A large object whose 256 KiB chunks repeat inside it (as in GGUF files with equal tensors)."""
    a, b, c = (pseudo_random(MAX_CHUNK_SIZE, seed + n) for n in range(3))
    fresh = pseudo_random(SMALL_OBJECT_LIMIT, seed + 3)
    return a + b + a + fresh + a + c + b + c + pseudo_random(1000, seed + 4)


def test_repeated_chunks_keep_the_segment_the_object_without_a_view(store, data_dir):
    data = _with_repeats(40)
    info = store.put_data(io.BytesIO(data))
    path = store.object_path(info.id)
    assert path.parent == data_dir / "segments"
    assert list((data_dir / "views").iterdir()) == []
    assert path.read_bytes() == data
    assert disk_bytes(data_dir) < 1.01 * len(data)
    assert b"".join(store.read(info.id)) == data


def test_a_copy_of_a_file_with_repeats_maps_the_first_segment(store, data_dir):
    data = _with_repeats(50)
    first = store.put_data(io.BytesIO(data), tags=tags(Name="first"))
    second = store.put_data(io.BytesIO(data), tags=tags(Name="second"))
    assert store.object_path(second.id) == store.object_path(first.id)
    assert list((data_dir / "views").iterdir()) == []
    assert disk_bytes(data_dir) < 1.01 * len(data)


def test_chunks_stored_by_other_objects_are_still_deduplicated(store, data_dir):
    shared = pseudo_random(SMALL_OBJECT_LIMIT + MAX_CHUNK_SIZE, 60)
    store.put_data(io.BytesIO(shared))
    before = disk_bytes(data_dir)
    # Shares most chunks with the first object and repeats one inside itself.
    tail = pseudo_random(MAX_CHUNK_SIZE, 61)
    data = shared + tail + tail
    info = store.put_data(io.BytesIO(data))
    assert disk_bytes(data_dir) - before == 2 * MAX_CHUNK_SIZE
    path = store.object_path(info.id)
    assert path == data_dir / "views" / info.id  # not one segment: a verified copy
    assert path.read_bytes() == data


def test_object_path_reads_each_chunk_once_per_process_and_not_at_all_unverified(store, monkeypatch):
    data = _with_repeats(70)
    info = store.put_data(io.BytesIO(data))
    loads = []
    load, load_run = store.chunks.load, store.chunks.load_run
    monkeypatch.setattr(store.chunks, "load", lambda id, row: loads.append(row["idx"]) or load(id, row))

    def counted_run(id, run):  # a run of one goes through load
        loads.extend(r["idx"] for r in run if len(run) > 1)
        return load_run(id, run)

    monkeypatch.setattr(store.chunks, "load_run", counted_run)
    store.object_path(info.id, verify=False)  # a caller that checks the bytes itself (resolve_model)
    assert loads == []
    store.object_path(info.id)
    assert sorted(loads) == list(range(len(loads))) and len(loads) == -(-len(data) // MAX_CHUNK_SIZE)
    store.object_path(info.id)
    assert len(loads) == -(-len(data) // MAX_CHUNK_SIZE)


def test_large_reads_come_in_verified_runs_of_many_chunks(store):
    from permastore.store.reader import READ_RUN_BYTES

    data = pseudo_random(3 * READ_RUN_BYTES + 5 * MAX_CHUNK_SIZE + 3, 80)
    info = store.put_data(io.BytesIO(data))
    pieces = list(store.read(info.id))
    assert b"".join(pieces) == data
    assert len(pieces) <= 5 and all(isinstance(p, bytes) for p in pieces)  # not one per 256 KiB chunk
    start, end = READ_RUN_BYTES - 7, 2 * READ_RUN_BYTES + 11
    assert b"".join(store.read(info.id, start, end)) == data[start:end]


def test_small_object_path_is_a_verified_read_only_view(store, data_dir):
    data = pseudo_random(5000, 2)
    info = store.put_data(data)
    path = store.object_path(info.id)
    assert path == data_dir / "views" / info.id
    assert path.read_bytes() == data
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444


def test_stdin_like_stream_of_unknown_size(store):
    data = pseudo_random(5 * 1024 * 1024 + 3, 4)

    class Trickle(io.RawIOBase):
        """A pipe: returns at most 100,000 bytes a read."""

        def __init__(self):
            self.pos = 0

        def read(self, n=-1):
            piece = data[self.pos : self.pos + min(n, 100_000)]
            self.pos += len(piece)
            return piece

    info = store.put_data(Trickle())
    assert b"".join(store.read(info.id)) == data


def test_bad_tags_are_refused_before_anything_is_stored(store, data_dir):
    with pytest.raises(LimitExceeded):
        store.put_data(b"x" * 10, tags=[Tag(b"n", b"v")] * 129)
    with pytest.raises(LimitExceeded):
        store.put_data(pseudo_random(SMALL_OBJECT_LIMIT + 10), tags=[Tag(b"", b"v")])
    assert store.db.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 0
    assert disk_bytes(data_dir) == 0


def test_progress_reports_every_byte(store):
    seen = []
    store.put_data(io.BytesIO(pseudo_random(9_000_000)), progress=seen.append)
    assert sum(seen) == 9_000_000


def test_reopen_keeps_everything(data_dir):
    data = pseudo_random(SMALL_OBJECT_LIMIT + 1, 8)
    with Store.open(data_dir) as store:
        big = store.put_data(data).id
        small = store.put_data(b"hello").id
    with Store.open(data_dir) as store:
        assert b"".join(store.read(big)) == data
        assert b"".join(store.read(small)) == b"hello"


def test_wrapped_item_signature_covers_the_data(store):
    info = store.put_data(b"payload")
    header = ans104.parse_header(store.raw_header(info.id))
    ans104.verify_header(header, deep_hash(b"payload"))
    with pytest.raises(InvalidSignature):
        ans104.verify_header(header, deep_hash(b"pAyload"))


@pytest.mark.parametrize("size", [0, 5000, SMALL_OBJECT_LIMIT + 3 * MAX_CHUNK_SIZE + 11])
def test_copy_to_writes_exactly_the_object(store, tmp_path, size):
    data = pseudo_random(size, 21)
    info = store.put_data(data)
    target = tmp_path / "out.bin"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT)
    try:
        assert store.copy_to(info.id, fd) == size
    finally:
        os.close(fd)
    assert target.read_bytes() == data


def test_concurrent_reads_across_more_segments_than_open_files(store, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from permastore.store import segments

    monkeypatch.setattr(segments, "OPEN_FILES_CACHE", 2)
    objects = {}
    for n in range(5):
        data = pseudo_random(SMALL_OBJECT_LIMIT + MAX_CHUNK_SIZE * (n + 1), 100 + n)
        objects[store.put_data(data).id] = data

    def read_all(id):
        return all(b"".join(store.read(id)) == objects[id] for _ in range(3))

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(read_all, list(objects) * 4))


def test_any_range_of_small_and_large_objects(store):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    small = pseudo_random(3 * MAX_CHUNK_SIZE + 999, 31)
    large = pseudo_random(SMALL_OBJECT_LIMIT + 2 * MAX_CHUNK_SIZE + 12_345, 32)
    ids = {store.put_data(small).id: small, store.put_data(large).id: large}

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(which=st.sampled_from(sorted(ids)), start=st.integers(0, len(large) + 10), length=st.integers(0, 600_000))
    def check(which, start, length):
        data = ids[which]
        assert store.read_range(which, start, length) == data[start : start + length]
        assert b"".join(store.read(which, start, start + length)) == data[start : start + length]

    check()
