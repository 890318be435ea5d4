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

from permastore.store import codec
from permastore.store.errors import NotFound, StoreError
from permastore.store.index import INLINE_SEGMENT
from permastore.store.reader import BUCKET_SEGMENT, chunk_rows
from permastore.store.segments import write_all

VERIFY_AHEAD = 16  # chunks (4 MiB) verified ahead of the copy


class Exporter:
    """Store mixin: ``copy_to``."""

    def copy_to(self, id: str, fd: int, progress=None) -> int:
        """Given an ID and a writable descriptor, write the object's verified data; return the byte count.

        Raises NotFound and CorruptChunk (nothing after the bad chunk is written).
        """
        row = self._row(id)
        if not row["data_complete"]:
            raise NotFound(id, "data of")
        start, end = 0, row["data_size"]
        while row["data_parent"] is not None:  # a bundled item: a range of its parent's bytes
            start, end = start + row["data_parent_offset"], end + row["data_parent_offset"]
            row = self._row(row["data_parent"])
        rows = chunk_rows(self.db, row["seq"], start, end)
        if self._cache is not None:
            self._cache.touch({r["segment_id"] for r in rows})
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
                        if self.bucket is None:
                            raise
                        # Evicted from the cache since it verified: the bucket's copy, verified again.
                        write_all(fd, memoryview(self._chunks.load(row["id"], chunk))[lo:hi])
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

    def _verify_ahead(self, id: str, rows, verified: queue.Queue, stop: threading.Event) -> None:
        """Verify each chunk in order; queue (row, None) for raw ones, (row, bytes) for decoded ones."""
        try:
            runs = ([row] for row in rows)
            if self.bucket is not None:
                runs = self.bucket.fetch_ahead(runs)  # chunks only in the bucket are read ahead
            for run in runs:
                chunk, fetched = (run[0][0], run[1]) if self.bucket is not None else (run[0], None)
                if stop.is_set():
                    return
                raw = self._chunks.load(id, chunk, fetched)  # raises CorruptChunk
                in_file = chunk["codec"] == codec.RAW and chunk["segment_id"] not in (INLINE_SEGMENT, BUCKET_SEGMENT)
                verified.put((chunk, None if in_file else raw))
        except BaseException as exc:
            verified.put((None, exc))
            return
        verified.put(None)

    def _copy_range(self, chunk, lo: int, hi: int, fd: int) -> None:
        offset = chunk["seg_offset"] + lo
        left = hi - lo
        with self._segment_file(chunk["segment_id"]) as source:
            while left:
                copied = os.copy_file_range(source, fd, left, offset)
                if copied == 0:
                    raise OSError(f"segment ended early while copying chunk {chunk['idx']}")
                offset += copied
                left -= copied
