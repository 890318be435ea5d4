"""Verified reads: every chunk is checked against its BLAKE3 address before its bytes leave."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import blake3

from permastore.protocol.merkle import MAX_CHUNK_SIZE
from permastore.store import codec
from permastore.store.errors import CorruptChunk
from permastore.store.index import INLINE_SEGMENT

# A read takes up to this many bytes of chunks stored back to back raw in one segment with
# one pread (dedicated segments are whole runs): fewer syscalls, and callers get pieces big
# enough to send without joining.
READ_RUN_BYTES = 4 * 1024 * 1024
# chunks.segment_id of a chunk held only in the bucket (raw, under its BLAKE3 key): see permastore.store.bucket.
BUCKET_SEGMENT = -1

CHUNK_ROWS_SQL = (
    "SELECT c.idx, c.offset, c.size, c.hash, k.segment_id, k.offset AS seg_offset, k.stored_size, k.codec"
    " FROM object_chunks c LEFT JOIN chunks k ON k.hash = c.hash"
    " WHERE c.seq = ? AND c.offset >= ? AND c.offset < ? AND c.offset + c.size > ? ORDER BY c.idx"
)


# A chunk row: sqlite3.Row or a dict with the CHUNK_ROWS_SQL columns.
ChunkRow = Any
# (BLAKE3 address, size) -> the chunk's raw bytes from the bucket.
RemoteLoad = Callable[[bytes, int], bytes]
ChunkRepair = Callable[[str, Any], bytes | None]  # (object ID, chunk row) -> verified bytes, or None


class SegmentFiles(Protocol):
    """What a ChunkReader needs to find stored bytes (SegmentCatalog)."""

    def opened(self, segment_id: int) -> AbstractContextManager[int]: ...

    def inline_bytes(self, inline_id: int) -> bytes | None: ...


def chunk_rows(conn, seq: int, start: int, end: int) -> list:
    """Given an object's seq and a byte range, return the rows of the chunks overlapping it."""
    # offset >= start - MAX_CHUNK_SIZE lets SQLite use the (seq, offset) index.
    return conn.execute(CHUNK_ROWS_SQL, (seq, start - MAX_CHUNK_SIZE, end, start)).fetchall()


def contiguous_runs(rows: Sequence[ChunkRow], limit: int = READ_RUN_BYTES) -> Iterator[list[ChunkRow]]:
    """Given chunk rows in object order, yield lists of them stored back to back raw in one segment file."""
    run: list[ChunkRow] = []
    size = 0
    for row in rows:
        if run and size + row["stored_size"] <= limit and _follows(run[-1], row):
            run.append(row)
            size += row["stored_size"]
            continue
        if run:
            yield run
        run, size = [row], row["stored_size"]
    if run:
        yield run


def _follows(previous, row) -> bool:
    return (
        row["codec"] == codec.RAW
        and previous["codec"] == codec.RAW
        and row["segment_id"] == previous["segment_id"]
        and row["segment_id"] not in (None, INLINE_SEGMENT, BUCKET_SEGMENT)
        and row["seg_offset"] == previous["seg_offset"] + previous["stored_size"]
    )


class ChunkReader:
    """Reads chunks by their index rows and verifies them; safe to share between threads."""

    def __init__(self, files: SegmentFiles):
        self.files = files
        self.remote: RemoteLoad | None = None  # raw bytes from the bucket (set when one is opened), or None: no bucket
        self.repair: ChunkRepair | None = None  # (id, row) -> verified bytes from a peer (bucket/repair.py)

    def load(self, id: str, row: ChunkRow, fetched: Callable[[], bytes] | None = None, from_bucket: bool = True) -> bytes:
        """Given an object ID and one chunk row, return the chunk's verified raw bytes (see _load);
        with a bucket and peers, a chunk that fails everywhere here is repaired from a peer."""
        try:
            return self._load(id, row, fetched, from_bucket)
        except CorruptChunk:
            raw = self.repair(id, row) if from_bucket and self.repair is not None else None
            if raw is None:
                raise
            return raw

    def _load(self, id: str, row: ChunkRow, fetched: Callable[[], bytes] | None = None, from_bucket: bool = True) -> bytes:
        """Given an object ID and one chunk row, return the chunk's verified raw bytes.

        fetched: a callable returning the chunk's raw bytes already being fetched from the
        bucket (read ahead), used instead of reading them here; verified the same way.
        from_bucket: with a bucket, a local copy that fails is replaced by the bucket's (False
        for fsck, which must report the local copy).
        """
        address = bytes(row["hash"])
        if row["segment_id"] is None:
            raise CorruptChunk(id, row["idx"], address.hex(), "chunk is missing from the index")
        try:
            chunk_codec, stored = (codec.RAW, fetched()) if fetched else self._stored(row)
            raw = codec.decode(chunk_codec, stored, row["size"])
        except Exception as exc:  # a missing file, a short segment, a broken zstd frame
            raise CorruptChunk(id, row["idx"], address.hex(), f"unreadable: {exc}") from None
        # Security: bytes leave the store only when they hash to the address we indexed.
        if len(raw) != row["size"] or blake3.blake3(raw).digest() != address:
            remote = self.remote
            if from_bucket and remote is not None and fetched is None and row["segment_id"] not in (INLINE_SEGMENT, BUCKET_SEGMENT):
                # A bad local copy (or a segment replaced under a stale name): the bucket's, verified.
                return self._load(id, row, lambda: remote(address, row["size"]))
            raise CorruptChunk(id, row["idx"], address.hex())
        return raw

    def load_run(self, id: str, run: list[ChunkRow]) -> bytes | None:
        """Given rows of chunks stored back to back raw in one segment, return their verified
        bytes, or None when any chunk fails (load them one by one to learn which)."""
        if len(run) == 1:
            return self.load(id, run[0])
        try:
            with self.files.opened(run[0]["segment_id"]) as fd:
                data = _pread_exact(fd, sum(row["stored_size"] for row in run), run[0]["seg_offset"])
        except Exception:
            return None
        view, at = memoryview(data), 0
        for row in run:
            # Security: the run leaves the store only when every chunk in it hashes to its address.
            if blake3.blake3(view[at : at + row["size"]]).digest() != bytes(row["hash"]):
                return None
            at += row["size"]
        return data

    def _stored(self, row: ChunkRow) -> tuple[int, bytes]:
        """Given a chunk row, return (codec, stored bytes): from the index, a segment, or the bucket."""
        if row["segment_id"] == INLINE_SEGMENT:
            stored = self.files.inline_bytes(row["seg_offset"])
            if stored is None or len(stored) != row["stored_size"]:
                raise OSError("inline chunk bytes are missing from the index")
            return row["codec"], stored
        if row["segment_id"] == BUCKET_SEGMENT and self.remote is not None:
            return codec.RAW, self.remote(bytes(row["hash"]), row["size"])
        try:
            with self.files.opened(row["segment_id"]) as fd:
                return row["codec"], _pread_exact(fd, row["stored_size"], row["seg_offset"])
        except Exception:
            if self.remote is None:
                raise
            # Evicted from the cache after these rows were read: the bucket holds it (verified by the caller).
            return codec.RAW, self.remote(bytes(row["hash"]), row["size"])


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    """Given a descriptor, a size and an offset, return exactly that many bytes or raise OSError."""
    data = os.pread(fd, size, offset)
    if len(data) == size:
        return data
    parts, got = [data], len(data)
    while got < size:
        more = os.pread(fd, size - got, offset + got)
        if not more:
            raise OSError(f"segment ends {size - got} bytes early")
        parts.append(more)
        got += len(more)
    return b"".join(parts)
