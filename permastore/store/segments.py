"""Segment files: append-only containers of chunk bytes.

Two kinds live in ``segments/``:
- ``pack-NNNNNN.seg``: small objects' chunks, raw or zstd, appended under ``.pack.lock``.
- ``obj-<uuid>.seg``: one large object's new chunks, raw and in order, written by one
  writer holding an flock on the file until its object is committed.

Sealed segments are read-only (0444). A segment becomes part of the store only
through a ``segments`` row committed in SQLite; anything else on disk is debris of
a crashed writer and is removed by ``remove_orphans`` (only by a process that has
the store to itself, see ``Store.open``).
"""

from __future__ import annotations

import fcntl
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SEGMENTS_DIR = "segments"
PACK_LOCK = ".pack.lock"
PACK_PREFIX = "pack-"
OBJECT_PREFIX = "obj-"
SUFFIX = ".seg"
SEALED_MODE = 0o444
# Start writeback every so often (without waiting) so the final fsync of a large object is short.
WRITEBACK_EVERY = 16 * 1024 * 1024
OPEN_FILES_CACHE = 64


def fsync_dir(path: Path) -> None:
    """Given a folder, fsync it so a file created or renamed in it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pack_name(number: int) -> str:
    """Given a pack number, return its file name."""
    return f"{PACK_PREFIX}{number:06d}{SUFFIX}"


def write_all(fd: int, data, offset: int | None = None) -> None:
    """Given a file descriptor and bytes, write them all (os.write may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if offset is not None:
            offset += written
        view = view[written:]


class ObjectSegmentWriter:
    """A dedicated segment being written: flocked, appended in order, then sealed."""

    def __init__(self, folder: Path):
        self.folder = folder
        while True:
            self.name = f"{OBJECT_PREFIX}{uuid.uuid4().hex}{SUFFIX}"
            self.path = folder / self.name
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            # Orphan cleanup takes this lock before unlinking; if it won the race
            # our file is gone and we start over with a fresh name.
            try:
                if os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(self.fd)
        fsync_dir(folder)
        self.size = 0
        self._written_back = 0

    def append(self, data) -> int:
        """Given bytes, append them; return the offset they start at."""
        offset = self.size
        write_all(self.fd, data)
        self.size += len(data)
        if self.size - self._written_back >= WRITEBACK_EVERY:
            # DONTNEED on dirty pages starts their writeback and returns at once; the
            # kernel would otherwise hold gigabytes dirty until our fsync, then stall on it.
            os.posix_fadvise(self.fd, self._written_back, self.size - self._written_back, os.POSIX_FADV_DONTNEED)
            self._written_back = self.size
        return offset

    def seal(self) -> None:
        """Make the written bytes durable and the file read-only (still locked)."""
        os.fsync(self.fd)
        os.fchmod(self.fd, SEALED_MODE)

    def discard(self) -> None:
        """Remove the file (nothing committed refers to it) and release it."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.release()

    def release(self) -> None:
        """Drop the lock and the descriptor (after the commit, or after discard)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class PackLock:
    """Exclusive lock on appending to pack segments, across processes."""

    def __init__(self, folder: Path):
        self.path = folder / PACK_LOCK

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


class PackAppender:
    """Appends to one pack segment at its end, inside a PackLock.

    Appends go after whatever the file holds, never over it: bytes a killed writer left
    past the committed end are skipped, not reused, because SQLite may still replay
    that writer's commit from the WAL (when it died inside COMMIT) on the next recovery.
    """

    def __init__(self, folder: Path, name: str):
        self.folder = folder
        self.name = name
        path = folder / name
        created = not path.exists()
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if created:
            fsync_dir(folder)
        self.size = os.fstat(self.fd).st_size

    def append(self, data) -> int:
        """Given bytes, write them at the end; return their offset."""
        offset = self.size
        write_all(self.fd, data, offset)
        self.size += len(data)
        return offset

    def sync(self) -> None:
        os.fsync(self.fd)

    def seal(self) -> None:
        os.fsync(self.fd)
        os.fchmod(self.fd, SEALED_MODE)

    def close(self) -> None:
        os.close(self.fd)


class SegmentReader:
    """Segment files open for reading, shared by threads; one in use is never closed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._open: OrderedDict[str, list] = OrderedDict()  # name -> [fd, users]
        self._lock = threading.Lock()

    @contextmanager
    def opened(self, name: str) -> Iterator[int]:
        """Given a segment name, yield a read descriptor of it, kept open while the block runs."""
        with self._lock:
            entry = self._open.get(name)
            if entry is None:
                entry = self._open[name] = [os.open(self.folder / name, os.O_RDONLY), 0]
            else:
                self._open.move_to_end(name)
            entry[1] += 1
            self._evict_idle()
        try:
            yield entry[0]
        finally:
            with self._lock:
                entry[1] -= 1

    def _evict_idle(self) -> None:
        # Only idle files are closed: a descriptor number closed under a reader could be
        # reused by the next open and make it read another segment's bytes.
        while len(self._open) > OPEN_FILES_CACHE:
            idle = next((name for name, (_, users) in self._open.items() if users == 0), None)
            if idle is None:
                return
            os.close(self._open.pop(idle)[0])

    def close(self) -> None:
        with self._lock:
            for fd, _ in self._open.values():
                os.close(fd)
            self._open.clear()


def remove_orphans(folder: Path, is_committed) -> list[str]:
    """Given the segments folder and a predicate on names, remove object segments that no
    committed row names and no live writer holds; return the names removed."""
    removed = []
    for path in folder.glob(f"{OBJECT_PREFIX}*{SUFFIX}"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a writer is still working on it
            # Checked under the lock: a writer commits before it lets go.
            if not is_committed(path.name):
                os.unlink(path)
                removed.append(path.name)
        finally:
            os.close(fd)
    return removed
