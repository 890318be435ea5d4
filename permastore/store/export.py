"""Copying an object's verified bytes to a file descriptor quickly (``permastore get -o``).

One thread verifies chunks ahead (BLAKE3 over the stored bytes); the caller's thread
copies each verified raw chunk segment -> output with ``copy_file_range`` (in-kernel,
as ``cp`` does), or writes the decoded bytes of a compressed one. A chunk is copied
only after it verified, from the same immutable (sealed, 0444) segment bytes.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from permastore.store import codec
from permastore.store.bucket_link import BucketLink
from permastore.store.connections import IndexConnections
from permastore.store.errors import NotFound, StoreError
from permastore.store.index import INLINE_SEGMENT
from permastore.store.object_reader import ObjectReader
from permastore.store.reader import BUCKET_SEGMENT, ChunkReader, ChunkRow, chunk_rows
from permastore.store.segment_catalog import SegmentCatalog
from permastore.store.segments import write_all

VERIFY_AHEAD = 16  # chunks (4 MiB) verified ahead of the copy


class ObjectExporter:
    """Given the index, the reader, the chunk reader, the segment catalog and the bucket link: ``copy_to``."""

    def __init__(self, index: IndexConnections, reader: ObjectReader, chunks: ChunkReader, segments: SegmentCatalog,
                 link: BucketLink):  # fmt: skip
        self.index = index
        self.reader = reader
        self.chunks = chunks
        self.segments = segments
        self.link = link

    def copy_to(self, id: str, fd: int, progress: Callable[[int], object] | None = None) -> int:
        """Given an ID and a writable descriptor, write the object's verified data; return the byte count.

        Raises NotFound and CorruptChunk (nothing after the bad chunk is written).
        """
        row = self.reader.row(id)
        if not row["data_complete"]:
            raise NotFound(id, "data of")
        start, end = 0, row["data_size"]
        while row["data_parent"] is not None:  # a bundled item: a range of its parent's bytes
            start, end = start + row["data_parent_offset"], end + row["data_parent_offset"]
            row = self.reader.row(row["data_parent"])
        rows = chunk_rows(self.index.db, row["seq"], start, end)
        if self.link.cache is not None:
            self.link.touch({r["segment_id"] for r in rows})
        verified: queue.Queue = queue.Queue(maxsize=VERIFY_AHEAD)
        stop = threading.Event()
        worker = threading.Thread(target=self._verify_ahead, args=(row["id"], rows, verified, stop), daemon=True)
        worker.start()
        written = 0
        try:
            for chunk, raw in iter(verified.get, None):
                if isinstance(raw, BaseException):
                    raise raw
                lo = max(start - chunk["offset"], 0)
                hi = min(end - chunk["offset"], chunk["size"])
                if raw is None:
                    try:
                        self._copy_range(chunk, lo, hi, fd)
                    except (FileNotFoundError, StoreError):
                        if self.link.bucket is None:
                            raise
                        # Evicted from the cache since it verified: the bucket's copy, verified again.
                        write_all(fd, memoryview(self.chunks.load(row["id"], chunk))[lo:hi])
                else:
                    write_all(fd, memoryview(raw)[lo:hi])
                written += hi - lo
                if progress:
                    progress(hi - lo)
        finally:
            stop.set()
            while worker.is_alive():  # unblock a worker waiting on a full queue
                try:
                    verified.get_nowait()
                except queue.Empty:
                    worker.join(0.01)
        return written

    def _verify_ahead(self, id: str, rows: list[ChunkRow], verified: queue.Queue, stop: threading.Event) -> None:
        """Verify each chunk in order; queue (row, None) for raw ones, (row, bytes) for decoded ones."""
        try:
            for chunk, fetched in self._with_fetches(rows):
                if stop.is_set():
                    return
                raw = self.chunks.load(id, chunk, fetched)  # raises CorruptChunk
                in_file = chunk["codec"] == codec.RAW and chunk["segment_id"] not in (INLINE_SEGMENT, BUCKET_SEGMENT)
                verified.put((chunk, None if in_file else raw))
        except BaseException as exc:
            verified.put((None, exc))
            return
        verified.put(None)

    def _with_fetches(self, rows: Iterable[ChunkRow]) -> Iterator[tuple[ChunkRow, Any]]:
        """Yield (row, fetched): with a bucket, chunks only there are read ahead (fetched: their bytes)."""
        return ((run[0], fetched) for run, fetched in self.link.fetch_ahead([row] for row in rows))

    def _copy_range(self, chunk: ChunkRow, lo: int, hi: int, fd: int) -> None:
        offset = chunk["seg_offset"] + lo
        left = hi - lo
        with self.segments.opened(chunk["segment_id"]) as source:
            while left:
                copied = os.copy_file_range(source, fd, left, offset)
                if copied == 0:
                    raise OSError(f"segment ended early while copying chunk {chunk['idx']}")
                offset += copied
                left -= copied
