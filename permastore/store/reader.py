"""Verified reads: every chunk is checked against its BLAKE3 address before its bytes leave."""

from __future__ import annotations

import os

import blake3

from permastore.protocol.merkle import MAX_CHUNK_SIZE
from permastore.store import codec
from permastore.store.errors import CorruptChunk
from permastore.store.index import INLINE_SEGMENT
from permastore.store.segments import SegmentReader

CHUNK_ROWS_SQL = (
    "SELECT c.idx, c.offset, c.size, c.hash, k.segment_id, k.offset AS seg_offset, k.stored_size, k.codec"
    " FROM object_chunks c LEFT JOIN chunks k ON k.hash = c.hash"
    " WHERE c.seq = ? AND c.offset >= ? AND c.offset < ? AND c.offset + c.size > ? ORDER BY c.idx"
)


def chunk_rows(conn, seq: int, start: int, end: int) -> list:
    """Given an object's seq and a byte range, return the rows of the chunks overlapping it."""
    # offset >= start - MAX_CHUNK_SIZE lets SQLite use the (seq, offset) index.
    return conn.execute(CHUNK_ROWS_SQL, (seq, start - MAX_CHUNK_SIZE, end, start)).fetchall()


class ChunkReader:
    """Reads chunks by their index rows and verifies them; safe to share between threads."""

    def __init__(self, segments: SegmentReader, segment_name, inline_bytes):
        self.segments = segments
        self.segment_name = segment_name  # segment id -> file name
        self.inline_bytes = inline_bytes  # inline_chunks id -> stored bytes or None

    def load(self, id: str, row) -> bytes:
        """Given an object ID and one chunk row, return the chunk's verified raw bytes."""
        address = bytes(row["hash"])
        if row["segment_id"] is None:
            raise CorruptChunk(id, row["idx"], address.hex(), "chunk is missing from the index")
        try:
            stored = self._stored(row)
            raw = codec.decode(row["codec"], stored, row["size"])
        except Exception as exc:  # a missing file, a short segment, a broken zstd frame
            raise CorruptChunk(id, row["idx"], address.hex(), f"unreadable: {exc}") from None
        # Security: bytes leave the store only when they hash to the address we indexed.
        if len(raw) != row["size"] or blake3.blake3(raw).digest() != address:
            raise CorruptChunk(id, row["idx"], address.hex())
        return raw

    def _stored(self, row) -> bytes:
        if row["segment_id"] == INLINE_SEGMENT:
            stored = self.inline_bytes(row["seg_offset"])
            if stored is None or len(stored) != row["stored_size"]:
                raise OSError("inline chunk bytes are missing from the index")
            return stored
        with self.segments.opened(self.segment_name(row["segment_id"])) as fd:
            return _pread_exact(fd, row["stored_size"], row["seg_offset"])


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
