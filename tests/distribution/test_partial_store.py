"""Partially held objects in the store: written in place, durable in batches, resumed, completed, checked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from permastore.protocol import ans104, merkle
from permastore.protocol.errors import InvalidSignature
from permastore.protocol.tags import Tag
from permastore.sources.proofs import ItemCheck
from permastore.store import NotFound, Store

from .conftest import seeded, signed_tx


@pytest.fixture
def store(tmp_path, jwk):
    opened = Store.open(seeded(tmp_path / "data", jwk))
    yield opened
    opened.close()


def pending_tx(store, signer, data):
    tx = signed_tx(signer, data)
    header = type(tx)(**{**tx.__dict__, "data": b""})
    store.put_tx(header, None)
    return tx


def test_a_tx_filled_out_of_order_resumes_and_completes_as_its_own_segment(tmp_path, jwk, rsa_signer):
    data = os.urandom(5 * merkle.MAX_CHUNK_SIZE + 777)
    cut = [(s, e) for s, e in merkle.chunk_ranges(len(data)) if e > s]
    folder = seeded(tmp_path / "data", jwk)
    with Store.open(folder) as store:
        tx = pending_tx(store, rsa_signer, data)
        writer = store.open_partial(tx.id, "tx", len(data))
        for start, end in (cut[3], cut[0], cut[5]):
            writer.write(start, data[start:end])
        assert writer.read(0, 10) == data[:10]  # written, not yet in a batch: this process may serve it
        with pytest.raises(NotFound):
            store.read_partial(tx.id, 0, 10)  # other readers see only what a batch made durable
        writer.flush()
        assert b"".join(store.read_partial(tx.id, 5, cut[0][1])) == data[5 : cut[0][1]]
        writer.close()
    # reopened (as after a crash): what was flushed on close is held, the rest missing
    with Store.open(folder) as store:
        info = store.partial_info(tx.id)
        assert (info.held_bytes, info.ranges, info.servable) == (sum(e - s for s, e in (cut[0], cut[3], cut[5])), 3, True)
        assert not store.info(tx.id).data_complete and store.info(tx.id).weave_offset is None
        with pytest.raises(NotFound):
            store.read_partial(tx.id, 0, cut[1][1])  # chunk 1 is not held
        assert store.fsck().ok and store.fsck().partial_objects == 1
        writer = store.open_partial(tx.id, "tx", len(data))
        assert writer.missing() == [(cut[1][0], cut[3][0]), (cut[4][0], cut[5][0])]
        for start, end in (cut[1], cut[2], cut[4]):
            writer.write(start, data[start:end])
        info = writer.complete()
        assert info.data_complete and info.weave_offset == len(data) - 1
        assert b"".join(store.read(tx.id)) == data
        path = store.object_path(tx.id)
        assert path.parent.name == "segments" and path.read_bytes() == data  # the segment is the object
        assert store.partial_info(tx.id) is None and store.fsck().ok
        for proof in store.chunk_proofs(tx.id):
            merkle.validate_path(tx.data_root, proof.offset, 0, len(data), proof.proof)


def test_an_item_verified_at_the_end_is_indexed_only_when_its_signature_holds(store, ed_signer):
    data = os.urandom(3 * merkle.MAX_CHUNK_SIZE + 5)
    item = ans104.build_item(ed_signer, data, [])
    header = ans104.parse_header(item)
    raw_header = item[: header.header_size]
    writer = store.open_partial(header.id, "item", len(data), raw_header, proof="end")
    writer.write(0, data[:1000])
    writer.write(1000, data[1000:])
    with pytest.raises(NotFound):
        store.read_partial(header.id, 0, 10)  # unproven bytes are never served
    assert store.info(header.id) is None  # nor indexed
    info = writer.complete(ItemCheck(raw_header))
    assert info.kind == "item" and b"".join(store.item_bytes(header.id)) == item
    # A copy with one flipped byte does not verify: nothing indexed, nothing left behind.
    other = ans104.build_item(ed_signer, data, [Tag(b"Copy", b"2")])
    other_header = ans104.parse_header(other)
    writer = store.open_partial(other_header.id, "item", len(data), other[: other_header.header_size], proof="end")
    writer.write(0, data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(InvalidSignature):
        writer.complete(ItemCheck(other[: other_header.header_size]))
    assert store.info(other_header.id) is None and store.partial_info(other_header.id) is None
    assert len(list(store.segments_dir.glob("obj-*.seg"))) == 1


def test_fsck_reports_a_corrupt_held_range_without_calling_the_partial_object_corrupt(store, rsa_signer):
    data = os.urandom(2 * merkle.MAX_CHUNK_SIZE + 10)
    tx = pending_tx(store, rsa_signer, data)
    writer = store.open_partial(tx.id, "tx", len(data))
    writer.write(0, data[: merkle.MAX_CHUNK_SIZE])
    writer.flush()
    assert store.fsck().ok
    segment = store.segments_dir / writer.segment_name
    writer.close()
    os.chmod(segment, 0o644)
    with open(segment, "r+b") as out:
        out.seek(100)
        out.write(b"\xff" if data[100] != 0xFF else b"\x00")
    report = store.fsck()
    assert not report.ok and [f[0] for f in report.failures] == [tx.id]


WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from permastore.store import Store
    folder, tx_id, size, flush_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    data = open(sys.argv[5], "rb").read()
    store = Store.open(folder)
    writer = store.open_partial(tx_id, "tx", size)
    from permastore.protocol import merkle
    for number, (start, end) in enumerate([(s, e) for s, e in merkle.chunk_ranges(size) if e > s]):
        writer.write(start, data[start:end])
        if number + 1 == flush_after:
            writer.flush()
            print("flushed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # after more writes that no batch recorded
    """
)


def test_sigkill_keeps_exactly_the_flushed_ranges(tmp_path, jwk, rsa_signer):
    data = os.urandom(10 * merkle.MAX_CHUNK_SIZE)
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    folder = seeded(tmp_path / "data", jwk)
    with Store.open(folder) as store:
        tx = pending_tx(store, rsa_signer, data)
    run = subprocess.run([sys.executable, "-c", WRITER, str(folder), tx.id, str(len(data)), "4", str(source)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == -signal.SIGKILL and "flushed" in run.stdout, run.stderr
    with Store.open(folder) as store:
        info = store.partial_info(tx.id)
        assert info.held_bytes == 4 * merkle.MAX_CHUNK_SIZE and store.fsck().ok
        assert b"".join(store.read_partial(tx.id, 0, info.held_bytes)) == data[: info.held_bytes]
        writer = store.open_partial(tx.id, "tx", len(data))
        assert writer.missing() == [(4 * merkle.MAX_CHUNK_SIZE, len(data))]
        writer.write(4 * merkle.MAX_CHUNK_SIZE, data[4 * merkle.MAX_CHUNK_SIZE :])
        assert writer.complete().data_complete  # the rest in one range: the chunk list is read back
        assert b"".join(store.read(tx.id)) == data and store.fsck().ok


def test_a_writer_let_go_under_a_reader_waits_for_its_read_and_then_refuses_reads(store, rsa_signer, monkeypatch):
    """A client streamed while the fetch runs reads on another thread: the segment's descriptor is
    closed only after a read in progress on it ends, and a read after that is PartialClosed (the
    store then has the object), never a pread on a closed or reused descriptor."""
    import threading

    from permastore.store import partial_writer
    from permastore.store.errors import PartialClosed

    data = os.urandom(2 * merkle.MAX_CHUNK_SIZE)
    tx = pending_tx(store, rsa_signer, data)
    writer = store.open_partial(tx.id, "tx", len(data))
    writer.write(0, data[: merkle.MAX_CHUNK_SIZE])
    inside, go_on = threading.Event(), threading.Event()
    real_pread = os.pread

    def held_pread(fd, size, offset):
        if threading.current_thread().name == "reader":
            inside.set()
            go_on.wait(30)  # a read in progress, as a slow disk leaves it
        return real_pread(fd, size, offset)

    monkeypatch.setattr(partial_writer.os, "pread", held_pread)
    got = {}
    reader = threading.Thread(target=lambda: got.update(bytes=writer.read(0, 100)), name="reader")
    reader.start()
    assert inside.wait(30)
    closer = threading.Thread(target=writer.close)
    closer.start()
    closer.join(0.5)
    assert writer.fd >= 0  # not closed under the read
    go_on.set()
    reader.join(30)
    closer.join(30)
    assert got["bytes"] == data[:100] and writer.fd == -1
    with pytest.raises(PartialClosed):
        writer.read(0, 100)
