"""Filling a partially held object: verified bytes written at their final positions in its
dedicated segment, made durable in batches, then the whole sealed and indexed at once.

Durable order, per batch: pwrite of each range -> fdatasync of the segment -> one SQLite
transaction recording the ranges. A range is never recorded before its bytes are on disk,
so a fetch killed at any point resumes with exactly the ranges it had recorded (a range
written again after a crash is the same proven bytes at the same place).
On completion the segment is byte-for-byte the object: ``object_path`` maps it, no copy.
"""

from __future__ import annotations

import bisect
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import blake3

from permastore.protocol import ans104
from permastore.protocol.merkle import chunk_ranges
from permastore.store import codec
from permastore.store.errors import CorruptChunk, NotFound, PartialClosed, StoreError
from permastore.store.index import insert_chunk_list, insert_object, record_chunks, transaction
from permastore.store.ingest import NewChunk
from permastore.store.object_rows import item_row
from permastore.store.records import ObjectInfo
from permastore.store.segments import SEALED_MODE, write_all
from permastore.store.weave import assign_weave_range

FLUSH_BYTES = 128 * 1024 * 1024  # a batch: this many bytes written ...
FLUSH_SECONDS = 1.0  # ... or this long since the last batch, whichever comes first
READ_BACK_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class HeldRange:
    """Bytes [offset, offset + size) of a partial object, their BLAKE3 and (for a tx chunk) SHA-256."""

    offset: int
    size: int
    hash: bytes
    sha256: bytes | None = None


class PartialHost(Protocol):
    """What a PartialWriter needs of the partial objects it belongs to (PartialObjects)."""

    @property
    def db(self) -> sqlite3.Connection: ...

    def abandon_partial(self, id: str, writer: PartialWriter | None = None) -> None: ...

    def completed(self, id: str) -> ObjectInfo | None: ...


class CompletionCheck(Protocol):
    """What ``complete(check)`` feeds the object's data to (an item's signature, a tx's data_root)."""

    def update(self, data: bytes) -> object: ...

    def finish(self) -> object: ...


class PartialWriter:
    """One partial object open for filling by this process (its segment flocked); thread-safe.

    ``write`` may be called from many threads; ``flush`` makes what was written durable;
    ``complete`` seals and indexes the object once every byte is held.
    """

    def __init__(self, host: PartialHost, row: dict, segment_name: str, fd: int, held: list[HeldRange]):
        self.host = host
        self.id = row["id"]
        self.kind = row["kind"]
        self.data_size = row["data_size"]
        self.proof = row["proof"]
        self.raw_header = bytes(row["raw_header"])
        self.bundled_in = row["bundled_in"]
        self.segment_id = row["segment_id"]
        self.segment_name = segment_name
        self.fd = fd
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # Readers (a client streamed while the fetch runs) pread on other threads: the descriptor
        # is closed only once none is using it, so a read never hits a closed or reused one.
        self._fd_users = 0
        self._fd_idle = threading.Condition()
        self._held: dict[int, HeldRange] = {r.offset: r for r in held}
        self._offsets = sorted(self._held)
        self._pending: list[HeldRange] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        self.held_bytes = sum(r.size for r in held)
        self.durable_bytes = self.held_bytes

    # -- writing -------------------------------------------------------------------------

    def write(self, offset: int, data: bytes | memoryview, sha256: bytes | None = None) -> HeldRange:
        """Given proven bytes and their offset in the object, write them in place; return the range.

        Bytes already held at that offset (a hedged duplicate) are not written again.
        """
        size = len(data)
        if offset < 0 or size <= 0 or offset + size > self.data_size:
            raise StoreError(f"{self.id}: range {offset}+{size} is outside its {self.data_size} bytes")
        found = self._held.get(offset)
        if found is not None:
            return found
        held = HeldRange(offset, size, blake3.blake3(data).digest(), sha256)
        write_all(self.fd, data, offset)
        # Start these pages' writeback now, without waiting (DONTNEED leaves dirty pages cached):
        # the next batch's fdatasync then finds little left to write, instead of stalling every writer.
        os.posix_fadvise(self.fd, offset, size, os.POSIX_FADV_DONTNEED)
        with self._lock:
            if offset in self._held:
                return self._held[offset]
            self._held[offset] = held
            bisect.insort(self._offsets, offset)
            self._pending.append(held)
            self._pending_bytes += size
            self.held_bytes += size
        return held

    def flush_due(self) -> bool:
        """True when a batch is due (enough bytes, or enough time, since the last one)."""
        if not self._pending:
            return False
        return self._pending_bytes >= FLUSH_BYTES or time.monotonic() - self._last_flush >= FLUSH_SECONDS

    def flush(self) -> None:
        """Make every range written so far durable: fdatasync, then one commit of their rows."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending, self._pending_bytes = self._pending, [], 0
            if not batch:
                return
            os.fdatasync(self.fd)  # the bytes first: no row ever points at bytes not on disk
            with transaction(self.host.db) as conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO partial_ranges(id, offset, size, hash, sha256) VALUES (?, ?, ?, ?, ?)",
                    [(self.id, r.offset, r.size, r.hash, r.sha256) for r in batch],
                )
            self.durable_bytes += sum(r.size for r in batch)
            self._last_flush = time.monotonic()

    # -- reading what is held --------------------------------------------------------------

    def held(self, offset: int) -> HeldRange | None:
        """Given an offset where a range starts, return that range if it is held."""
        return self._held.get(offset)

    def covering(self, start: int, end: int) -> list[HeldRange] | None:
        """Given a byte span, return the held ranges covering it in order, or None if a byte is missing."""
        with self._lock:
            at = bisect.bisect_right(self._offsets, start) - 1
            out: list[HeldRange] = []
            pos = start
            while pos < end:
                if at < 0 or at >= len(self._offsets):
                    return None
                found = self._held[self._offsets[at]]
                if not found.offset <= pos < found.offset + found.size:
                    return None
                out.append(found)
                pos = found.offset + found.size
                at += 1
            return out

    def read(self, start: int, end: int) -> bytes:
        """Given a held span, return its bytes, each range checked against its BLAKE3 first."""
        ranges = self.covering(start, end)
        if ranges is None:
            raise NotFound(self.id, f"bytes {start}-{end} of")
        return b"".join(_within(self._load(r), r.offset, start, end) for r in ranges)

    def _load(self, held: HeldRange) -> bytes:
        with self._fd_idle:
            if self.fd < 0:
                raise PartialClosed(f"{self.id}: the partial object was let go (completed or dropped)")
            fd = self.fd
            self._fd_users += 1
        try:
            data = os.pread(fd, held.size, held.offset)
        finally:
            with self._fd_idle:
                self._fd_users -= 1
                if not self._fd_users:
                    self._fd_idle.notify_all()  # a release() may be waiting
        # Security: held bytes leave the store only when they still hash to what was proven.
        if len(data) != held.size or blake3.blake3(data).digest() != held.hash:
            raise CorruptChunk(self.id, -1, held.hash.hex(), f"held range at {held.offset} changed on disk")
        return data

    # -- completing ----------------------------------------------------------------------

    def missing(self) -> list[tuple[int, int]]:
        """Return the byte spans not held yet, in order."""
        gaps: list[tuple[int, int]] = []
        pos = 0
        with self._lock:
            for offset in self._offsets:
                if offset > pos:
                    gaps.append((pos, offset))
                pos = max(pos, offset + self._held[offset].size)
        if pos < self.data_size:
            gaps.append((pos, self.data_size))
        return gaps

    def complete(self, check: CompletionCheck | None = None) -> ObjectInfo | None:
        """Given every byte held, seal the segment and index the object; return its ObjectInfo.

        ``check`` (optional) gets ``update(bytes)`` with the data in order and then ``finish()``,
        which raises when the object does not verify (an item's signature, a tx's data_root):
        then nothing is indexed and the partial object is dropped.
        """
        self.flush()
        if self.missing():
            raise StoreError(f"{self.id}: {self.data_size - self.held_bytes} bytes are still missing")
        try:
            chunk_list = self._chunk_list(check)
        except BaseException:
            self.host.abandon_partial(self.id, writer=self)
            raise
        os.fdatasync(self.fd)
        os.fchmod(self.fd, SEALED_MODE)
        committed = self._commit(chunk_list)
        self.close()
        if not committed:  # the object was completed meanwhile by another path
            self.host.abandon_partial(self.id)
        return self.host.completed(self.id)  # unbundled; with a bucket: complete only once it is there too

    def _chunk_list(self, check: CompletionCheck | None) -> list[tuple[int, int, bytes, bytes | None]]:
        """The object's chunk list (Arweave cut): from the held ranges when they are its chunks and
        nothing needs the bytes in order, else by reading the segment back once (checked on the way)."""
        cut = [(s, e) for s, e in chunk_ranges(self.data_size) if e > s]
        ranges = [self._held[o] for o in self._offsets]
        if check is None and [(r.offset, r.offset + r.size) for r in ranges] == cut:
            return [(r.offset, r.size, r.hash, r.sha256) for r in ranges]
        out: list[tuple[int, int, bytes, bytes | None]] = []
        for start, end in cut:
            data = os.pread(self.fd, end - start, start)
            if len(data) != end - start:
                raise StoreError(f"{self.id}: segment ends early at {start}")
            if check is not None:
                check.update(data)
            out.append((start, end - start, blake3.blake3(data).digest(), None))
        if check is not None:
            check.finish()
        return out

    def _commit(self, chunk_list: list[tuple[int, int, bytes, bytes | None]]) -> bool:
        """In one transaction: the sealed segment, its chunks, the object's row; False if already complete."""
        with transaction(self.host.db) as conn:
            row = conn.execute("SELECT seq, format, data_complete FROM objects WHERE id = ?", (self.id,)).fetchone()
            if self.kind == "tx":
                if row is None:
                    raise StoreError(f"{self.id}: the tx header row is gone")
                if row["data_complete"]:
                    return False
                seq = row["seq"]
            else:
                if row is not None:
                    return False
                header = ans104.parse_header(self.raw_header)
                seq = insert_object(conn, _item_row(header, self.raw_header, self.data_size, self.bundled_in), header.tags)
            conn.execute(
                "UPDATE segments SET committed_size = ?, sealed = 1 WHERE id = ?", (self.data_size, self.segment_id)
            )
            new = [NewChunk(h, size, codec.RAW, None, offset=o, stored_size=size, sha256=sha) for o, size, h, sha in chunk_list]
            record_chunks(conn, self.segment_id, new)
            insert_chunk_list(conn, seq, chunk_list)
            conn.execute("INSERT OR REPLACE INTO segment_objects(segment_id, seq) VALUES (?, ?)", (self.segment_id, seq))
            if self.kind == "tx":
                conn.execute("UPDATE objects SET data_complete = 1 WHERE seq = ?", (seq,))
                assign_weave_range(conn, seq, row["format"], self.data_size)
            conn.execute("DELETE FROM partial_ranges WHERE id = ?", (self.id,))
            conn.execute("DELETE FROM partial_objects WHERE id = ?", (self.id,))
        return True

    def close(self) -> None:
        """Flush what was written and let go of the segment (the object stays partial)."""
        if self.fd < 0:
            return
        try:
            if self._pending:
                self.flush()
        finally:
            self.release()

    def release(self) -> None:
        """Let go of the segment without flushing, once no reader is using it (releases the flock)."""
        with self._fd_idle:
            while self._fd_users:
                self._fd_idle.wait()
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def _item_row(header: ans104.DataItemHeader, raw_header: bytes, data_size: int, bundled_in: str | None) -> dict:
    return item_row(header, raw_header, data_size) | {"bundled_in": bundled_in}


def _within(data: bytes, offset: int, start: int, end: int) -> bytes:
    lo, hi = max(start - offset, 0), min(end - offset, len(data))
    return data if (lo == 0 and hi == len(data)) else data[lo:hi]
