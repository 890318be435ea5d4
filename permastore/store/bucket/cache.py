"""The local data folder as a cache of chunk data, bounded by --cache-size.

The unit of eviction is a sealed segment whose every chunk is in the bucket (table
bucket_chunks): a dedicated one (one large object's) or a pack (objects up to 4 MiB; with a
bucket a pack is sealed at an eighth of the bound, `pack_limit`, so the open pack, never
evicted, stays small). Partial objects (unsealed) and chunks kept inline in the index are
never evicted. Least recently used first: a read touches the segments it reads (mtime, at
most once a second per segment), so the order survives restarts and is shared by every
process on the folder. Evicting a segment points its chunks at the bucket (chunks.segment_id
= BUCKET_SEGMENT) and drops its rows in one commit, then unlinks the file; a reader that
still had the old rows finds the file gone and reads the chunk from the bucket (verified).

Pinning: `object_path` hands out a segment file to be memory-mapped (a model); the Store
holds a shared flock on it while open, and eviction skips any file it cannot lock
exclusively, in any process. Materialised views (objects whose data is in the bucket) are
written under views/ and are not counted.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

from permastore.store import codec
from permastore.store.index import transaction
from permastore.store.reader import BUCKET_SEGMENT

TOUCH_EVERY = 1.0
EVICT_LOCK = ".evict.lock"

# With a bucket, packs are sealed at an eighth of the cache bound (never above the store's
# 1 GiB, never below this): the open pack is the one part of the folder that cannot go.
MIN_PACK_LIMIT = 1024 * 1024

EVICTABLE_SQL = (
    # Sealed segments only: a pack being appended to, or a partial object being filled, stays.
    "SELECT s.id, s.name, s.committed_size FROM segments s WHERE s.sealed = 1"
    " AND NOT EXISTS (SELECT 1 FROM chunks k WHERE k.segment_id = s.id"
    " AND NOT EXISTS (SELECT 1 FROM bucket_chunks b WHERE b.hash = k.hash))"
)


class SegmentCache:
    """Given a Store and a bound in bytes, keep its segment files under the bound (LRU)."""

    def __init__(self, store, limit: int):
        self.store = store
        self.limit = limit
        self._touched: dict[int, float] = {}
        self._pins: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def pack_limit(self) -> int:
        """The size past which a pack is sealed (and so may be evicted) under this bound."""
        return max(MIN_PACK_LIMIT, self.limit // 8)

    def local_bytes(self) -> int:
        """Bytes of chunk data held in segment files here."""
        return self.store.db.execute("SELECT COALESCE(SUM(committed_size), 0) FROM segments").fetchone()[0]

    def touch(self, segment_ids) -> None:
        """Mark segments as just used (their file's mtime), at most once a second each."""
        now = time.monotonic()
        for segment_id in segment_ids:
            if segment_id is None or segment_id <= 0 or now - self._touched.get(segment_id, -TOUCH_EVERY) < TOUCH_EVERY:
                continue
            self._touched[segment_id] = now
            try:
                os.utime(self.store.segments.path(segment_id))
            except (OSError, Exception):  # gone meanwhile (evicted): nothing to mark
                pass

    def pin(self, path) -> None:
        """Hold a shared lock on a segment file handed out for mmap, until the Store closes."""
        key = str(path)
        with self._lock:
            if key in self._pins:
                return
            fd = os.open(path, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._pins[key] = fd

    def close(self) -> None:
        with self._lock:
            for fd in self._pins.values():
                os.close(fd)
            self._pins.clear()

    def trim(self) -> int:
        """Evict least recently used segments until the folder holds at most the bound; return bytes freed."""
        total = self.local_bytes()
        if total <= self.limit:
            return 0
        lock = os.open(self.store.segments_dir / EVICT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is trimming this folder
            return self._trim(total)
        finally:
            os.close(lock)

    def _trim(self, total: int) -> int:
        candidates = []
        for row in self.store.db.execute(EVICTABLE_SQL).fetchall():
            try:
                candidates.append((os.stat(self.store.segments_dir / row["name"]).st_mtime, row))
            except FileNotFoundError:
                candidates.append((0.0, row))
        freed = 0
        for _, row in sorted(candidates, key=lambda c: c[0]):
            if total - freed <= self.limit:
                break
            if self._evict(row):
                freed += row["committed_size"]
        return freed

    def _evict(self, row) -> bool:
        path = self.store.segments_dir / row["name"]
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            fd = -1
        try:
            if fd >= 0:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False  # pinned: memory-mapped by someone
            conn = self.store.db
            with transaction(conn):
                conn.execute(
                    "UPDATE chunks SET segment_id = ?, offset = 0, stored_size = size, codec = ? WHERE segment_id = ?",
                    (BUCKET_SEGMENT, codec.RAW, row["id"]),
                )
                conn.execute("DELETE FROM segment_objects WHERE segment_id = ?", (row["id"],))
                conn.execute("DELETE FROM segments WHERE id = ?", (row["id"],))
            self.store.segments.forget(row["id"])
            path.unlink(missing_ok=True)
            return True
        finally:
            if fd >= 0:
                os.close(fd)
