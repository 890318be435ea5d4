"""Segment files by their index IDs: names (cached), read descriptors, inline chunk bytes.

`SegmentCatalog` owns the store's open segment files (a `SegmentReader`) and the cache of
segment ID -> file name; whoever removes a segment row (eviction, an abandoned partial
object) tells it with ``forget``.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from pathlib import Path

from permastore.store.connections import IndexConnections
from permastore.store.errors import StoreError
from permastore.store.segments import SegmentReader


class SegmentCatalog:
    """Given the segments folder and the index, name segments and open them for reading; thread-safe."""

    def __init__(self, folder: Path, index: IndexConnections):
        self.folder = folder
        self.index = index
        self.files = SegmentReader(folder)
        self._names: dict[int, str] = {}
        self._lock = threading.Lock()

    def name(self, segment_id: int) -> str:
        """Given a segment ID, return its file name; StoreError when the index has no such segment."""
        name = self._names.get(segment_id)
        if name is None:
            row = self.index.db.execute("SELECT name FROM segments WHERE id = ?", (segment_id,)).fetchone()
            if row is None:
                raise StoreError(f"segment {segment_id} is not in the index")
            name = row["name"]
            with self._lock:
                self._names[segment_id] = name
        return name

    def path(self, segment_id: int) -> Path:
        """Given a segment ID, return its file's path."""
        return self.folder / self.name(segment_id)

    def forget(self, segment_id: int) -> None:
        """Given the ID of a segment whose row was just deleted, drop its cached name."""
        with self._lock:
            self._names.pop(segment_id, None)

    def opened(self, segment_id: int) -> AbstractContextManager[int]:
        """Context manager: a read descriptor of a segment, open while the block runs."""
        return self.files.opened(self.name(segment_id))

    def committed(self, name: str) -> bool:
        """Given a segment file name, return True when a committed index row names it."""
        return self.index.db.execute("SELECT 1 FROM segments WHERE name = ?", (name,)).fetchone() is not None

    def inline_bytes(self, inline_id: int) -> bytes | None:
        """Given an inline_chunks ID, return the stored bytes kept in the index, or None."""
        row = self.index.db.execute("SELECT stored FROM inline_chunks WHERE id = ?", (inline_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def close(self) -> None:
        self.files.close()
