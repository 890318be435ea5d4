"""Verify on read, fsck, and the node wallet."""

from __future__ import annotations

import json
import os
import stat

import pytest

from permastore.protocol.merkle import MAX_CHUNK_SIZE
from permastore.protocol.wallet import jwk_owner
from permastore.store import CorruptChunk, Store
from permastore.store.ingest import SMALL_OBJECT_LIMIT

from .conftest import pseudo_random


def flip_byte(path, offset: int) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def chunk_location(store, id: str, index: int):
    row = store.db.execute(
        "SELECT s.name, k.offset FROM objects o JOIN object_chunks c ON c.seq = o.seq"
        " JOIN chunks k ON k.hash = c.hash JOIN segments s ON s.id = k.segment_id WHERE o.id = ? AND c.idx = ?",
        (id, index),
    ).fetchone()
    return store.segments_dir / row[0], row[1]


def test_corrupt_chunk_is_never_served_and_error_names_id_and_chunk(store):
    data = pseudo_random(SMALL_OBJECT_LIMIT + 3 * MAX_CHUNK_SIZE, 1)
    info = store.put_data(data)
    path, offset = chunk_location(store, info.id, 2)
    flip_byte(path, offset + 100)
    pieces = []
    with pytest.raises(CorruptChunk) as caught:
        for piece in store.read(info.id):
            pieces.append(piece)
    assert caught.value.id == info.id and caught.value.chunk_index == 2
    assert info.id in str(caught.value) and "chunk 2" in str(caught.value)
    assert b"".join(pieces) == data[: 2 * MAX_CHUNK_SIZE]  # only verified chunks came out
    assert store.read_range(info.id, 0, 1000) == data[:1000]  # other chunks still serve
    with pytest.raises(CorruptChunk):
        store.read_range(info.id, 2 * MAX_CHUNK_SIZE + 5, 10)
    with pytest.raises(CorruptChunk):
        store.object_path(info.id)


def test_corrupt_compressed_chunk_in_a_pack_is_detected(store):
    # Compressible, yet more than codec.INLINE_LIMIT once compressed: it goes to a pack.
    info = store.put_data(pseudo_random(20_000, 5) + b"compress me please " * 3000)
    path, offset = chunk_location(store, info.id, 0)
    flip_byte(path, offset + 20)
    with pytest.raises(CorruptChunk):
        b"".join(store.read(info.id))


def test_fsck_passes_on_a_healthy_store_and_lists_every_failure(store):
    data = pseudo_random(SMALL_OBJECT_LIMIT + 2 * MAX_CHUNK_SIZE, 4)
    first = store.put_data(data)
    second = store.put_data(data)  # shares every chunk with the first
    small = store.put_data(b"small one")
    report = store.fsck()
    assert report.ok and not report.failures and report.objects_checked == 3
    path, offset = chunk_location(store, first.id, 1)
    flip_byte(path, offset)
    report = store.fsck()
    assert not report.ok
    assert {(id, index) for id, index, _ in report.failures} == {(first.id, 1), (second.id, 1)}
    assert small.id not in {f[0] for f in report.failures}


def test_corrupt_inline_chunk_is_detected_on_read_and_by_fsck(store):
    info = store.put_data(b"a tiny record kept inside the index")
    row = store.db.execute(
        "SELECT k.segment_id, k.offset FROM objects o JOIN object_chunks c ON c.seq = o.seq"
        " JOIN chunks k ON k.hash = c.hash WHERE o.id = ?",
        (info.id,),
    ).fetchone()
    assert row[0] == 0  # inline: no pack write, no second fsync
    tampered = b"a tiny record kept inside the indeX"
    store.db.execute("UPDATE inline_chunks SET stored = ? WHERE id = ?", (tampered, row[1]))
    with pytest.raises(CorruptChunk):
        b"".join(store.read(info.id))
    report = store.fsck()
    assert not report.ok and {f[0] for f in report.failures} == {info.id}


def test_fsck_reports_a_missing_segment(store):
    info = store.put_data(pseudo_random(SMALL_OBJECT_LIMIT + 1, 3))
    path, _ = chunk_location(store, info.id, 0)
    path.unlink()
    report = store.fsck()
    assert not report.ok
    assert any(id == info.id for id, _, _ in report.failures)


def test_first_open_creates_an_rsa_4096_wallet_readable_only_by_owner(tmp_path):
    with Store.open(tmp_path / "fresh") as store:
        wallet_path = tmp_path / "fresh" / "wallet.json"
        assert stat.S_IMODE(os.stat(wallet_path).st_mode) == 0o600
        assert len(jwk_owner(store.wallet)) == 512
        owner = store.wallet["n"]
        store.put_data(b"signed by the node")
    with Store.open(tmp_path / "fresh") as store:
        assert json.loads(wallet_path.read_text())["n"] == owner == store.wallet["n"]


def test_bytes_past_the_committed_end_of_a_pack_are_never_overwritten(store, data_dir):
    first_data, second_data = pseudo_random(20_000, 6), pseudo_random(30_000, 7)  # over INLINE_LIMIT
    first = store.put_data(first_data)
    pack = next((data_dir / "segments").glob("pack-*.seg"))
    debris = b"bytes of a writer killed inside its commit"
    with open(pack, "ab") as f:
        f.write(debris)  # SQLite may yet replay that commit, so they must stay as they are
    second = store.put_data(second_data)
    assert b"".join(store.read(first.id)) == first_data
    assert b"".join(store.read(second.id)) == second_data
    assert debris in pack.read_bytes()
    assert store.fsck().ok


def test_reopen_removes_views_half_written_by_a_dead_process(data_dir):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no live process
    views = data_dir / "views"
    with Store.open(data_dir) as store:
        info = store.put_data(b"viewed")
        stale = views / f".{info.id}.{dead.pid}.tmp"
        stale.write_bytes(b"half")
        live = views / f".{info.id}.{os.getpid()}.tmp"
        live.write_bytes(b"being written")
    with Store.open(data_dir) as store:
        assert not stale.exists() and live.exists()
        assert store.object_path(info.id).read_bytes() == b"viewed"
