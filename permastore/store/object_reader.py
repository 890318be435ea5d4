"""Reading stored objects: info, verified bytes (whole, ranges, items with their header), queries.

`ObjectReader` answers from the index (this thread's connection) and the chunk reader,
which verifies every chunk against its BLAKE3 address before its bytes leave; with a
bucket, chunks held only there are read ahead and segments read are marked as used.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from permastore.store.bucket_link import BucketLink
from permastore.store.connections import IndexConnections
from permastore.store.errors import NotFound, StoreError
from permastore.store.index import object_row, tags_of, to_info
from permastore.store.query import run_query
from permastore.store.reader import ChunkReader, ChunkRow, chunk_rows, contiguous_runs
from permastore.store.records import ObjectInfo, Page, Query


class ObjectReader:
    """Given the index, the chunk reader and the bucket link, read objects by ID; thread-safe."""

    def __init__(self, index: IndexConnections, chunks: ChunkReader, link: BucketLink):
        self.index = index
        self.chunks = chunks
        self.link = link

    def info(self, id: str) -> ObjectInfo | None:
        """Given an ID, return its ObjectInfo, or None when it is not stored."""
        db = self.index.db
        row = object_row(db, id)
        if row is None:
            return None
        return to_info(row, tags_of(db, [row["seq"]])[row["seq"]])

    def row(self, id: str) -> sqlite3.Row:
        """Given an ID, return its objects row; NotFound when it is not stored."""
        row = object_row(self.index.db, id) if isinstance(id, str) else None
        if row is None:
            raise NotFound(id)
        return row

    def read(self, id: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given an ID and a byte range [start, end), yield its bytes, each chunk verified first.

        Raises NotFound (unknown ID or data not yet complete) and CorruptChunk.
        """
        row = self.row(id)
        start, end = _clamp(start, end, row["data_size"])
        return self.read_row(row, start, end)

    def read_row(self, row: sqlite3.Row, start: int, end: int) -> Iterator[bytes]:
        """Given an object's row and a range within its data, yield the verified bytes."""
        if not row["data_complete"]:
            raise NotFound(row["id"], "data of")
        if start >= end:
            return iter(())
        if row["data_parent"] is not None:
            # A bundled item's bytes are a range of its parent's data: no copy.
            parent = self.row(row["data_parent"])
            base = row["data_parent_offset"]
            return self.read_row(parent, base + start, base + end)
        rows = chunk_rows(self.index.db, row["seq"], start, end)
        if self.link.cache is not None:
            self.link.touch({r["segment_id"] for r in rows})
        return self._read_chunks(row["id"], rows, start, end)

    def _read_chunks(self, id: str, rows: list[ChunkRow], start: int, end: int) -> Iterator[bytes]:
        # (run, fetched): with a bucket, chunks only there are read ahead; without one, fetched is None.
        for run, fetched in self.link.fetch_ahead(contiguous_runs(rows)):
            if fetched is not None:
                yield _within(self.chunks.load(id, run[0], fetched), run[0]["offset"], start, end)
                continue
            yield from self._read_run(id, run, start, end)

    def _read_run(self, id: str, run: list[ChunkRow], start: int, end: int) -> Iterator[bytes]:
        data = self.chunks.load_run(id, run)
        if data is None:
            # Some chunk failed: go chunk by chunk so every verified one before it is still
            # served and the error names the chunk.
            for chunk in run:
                yield _within(self.chunks.load(id, chunk), chunk["offset"], start, end)
            return
        yield _within(data, run[0]["offset"], start, end)

    def read_range(self, id: str, start: int, length: int) -> bytes:
        """Given an ID, a start and a length, return those bytes (fewer at the end of the data)."""
        if start < 0 or length < 0:
            raise StoreError(f"invalid range start={start} length={length}")
        return b"".join(self.read(id, start, start + length))

    def raw_header(self, id: str) -> bytes:
        """Given an ID, return the binary ANS-104 header (item) or the tx JSON bytes (tx)."""
        return bytes(self.row(id)["raw_header"])

    def item_bytes(self, id: str) -> Iterator[bytes]:
        """Given a data item ID, yield the whole original item: header, then verified data."""
        row = self.row(id)
        if row["kind"] != "item":
            raise StoreError(f"{id} is an L1 transaction, not a data item")
        yield bytes(row["raw_header"])
        yield from self.read_row(row, 0, row["data_size"])

    def query(self, q: Query) -> Page:
        """Given a Query, return one Page of matching objects."""
        return run_query(self.index.db, q)


def _within(data: bytes, offset: int, start: int, end: int) -> bytes:
    """Given bytes that begin at offset in the object, return the part inside [start, end)."""
    lo, hi = max(start - offset, 0), min(end - offset, len(data))
    return data if (lo == 0 and hi == len(data)) else data[lo:hi]


def _clamp(start: int, end: int | None, size: int) -> tuple[int, int]:
    if start < 0 or (end is not None and end < start):
        raise StoreError(f"invalid range start={start} end={end}")
    end = size if end is None else min(end, size)
    return min(start, size), end
