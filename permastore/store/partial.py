"""Partially held objects: an object being fetched from peers, visible as such while it completes.

A partial object has a row in ``partial_objects`` (its header, how it is proven, its leaf
list when known), a dedicated segment of its full size in which held bytes sit at their
final positions, and one ``partial_ranges`` row per held range (BLAKE3 of its bytes). An
L1 tx keeps its verified header in ``objects`` (data_complete = 0) meanwhile; an item,
whose header proves nothing without its data, is not in ``objects`` until it verifies.

- ``proof = 'chunks'``: every held byte was proven (a tx chunk against its data_path or
  leaf, bundle chunks covering an item): held ranges may be served while it completes.
- ``proof = 'end'``: bytes checked only when complete (an item with no L1 ancestor: its
  signature; a tx from a peer with no chunk routes: its data_root). Never served before.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from permastore.store.commits import ObjectCommitter
from permastore.store.connections import IndexConnections
from permastore.store.errors import CorruptChunk, NotFound, PartialBusy, StoreError
from permastore.store.index import transaction
from permastore.store.partial_writer import HeldRange, PartialWriter
from permastore.store.records import ObjectInfo
from permastore.store.segment_catalog import SegmentCatalog
from permastore.store.segments import OBJECT_PREFIX, SUFFIX, fsync_dir


@dataclass(frozen=True)
class PartialInfo:
    """What is held of an object being fetched: bytes held (durable), ranges, how it is proven."""

    id: str
    kind: str
    data_size: int
    held_bytes: int
    ranges: int
    proof: str
    bundled_in: str | None
    leaves: bytes | None

    @property
    def servable(self) -> bool:
        """True when held ranges may be served before the object completes."""
        return self.proof == "chunks"


class PartialObjects:
    """Given the index, the segment catalog and the committer: open, inspect, read, drop partially
    held objects (the host of their PartialWriters)."""

    def __init__(self, index: IndexConnections, segments: SegmentCatalog, committer: ObjectCommitter):
        self.index = index
        self.segments = segments
        self.committer = committer

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection to the index (for the PartialWriters)."""
        return self.index.db

    def completed(self, id: str) -> ObjectInfo | None:
        """Given an object a PartialWriter just indexed, unbundle and publish it; return its info."""
        return self.committer.finish(id)

    def open_partial(self, id: str, kind: str, data_size: int, raw_header: bytes = b"", proof: str = "chunks",
                     bundled_in: str | None = None, leaves: bytes | None = None) -> PartialWriter:  # fmt: skip
        """Given an object to fetch, return its PartialWriter: resumed with what is held, or new.

        Raises PartialBusy when another process is filling it (its segment is flocked).
        """
        if data_size <= 0:
            raise StoreError(f"{id}: nothing to fetch for an object of {data_size} bytes")
        row = self.db.execute("SELECT * FROM partial_objects WHERE id = ?", (id,)).fetchone()
        if row is not None and (row["kind"], row["data_size"], row["proof"]) != (kind, data_size, proof):
            self.abandon_partial(id)  # begun another way (another peer's answer): start over
            row = None
        if row is None:
            return self._new_partial(id, kind, data_size, raw_header, proof, bundled_in, leaves)
        name = self.segments.name(row["segment_id"])
        fd = _locked(self.segments.folder / name, id)
        held = [
            HeldRange(r["offset"], r["size"], bytes(r["hash"]), None if r["sha256"] is None else bytes(r["sha256"]))
            for r in self.db.execute("SELECT * FROM partial_ranges WHERE id = ? ORDER BY offset", (id,))
        ]
        if leaves is not None and row["leaves"] is None:
            with transaction(self.db) as conn:
                conn.execute("UPDATE partial_objects SET leaves = ? WHERE id = ?", (leaves, id))
        return PartialWriter(self, dict(row), name, fd, held)

    def _new_partial(self, id: str, kind: str, data_size: int, raw_header: bytes, proof: str, bundled_in: str | None,
                     leaves: bytes | None) -> PartialWriter:  # fmt: skip
        name = f"{OBJECT_PREFIX}{uuid.uuid4().hex}{SUFFIX}"
        path = self.segments.folder / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new name: nobody else can hold it
        try:
            _reserve(fd, data_size)
            fsync_dir(self.segments.folder)
            with transaction(self.db) as conn:
                segment_id = conn.execute(
                    "INSERT INTO segments(name, kind, committed_size, sealed) VALUES (?, 'object', 0, 0)", (name,)
                ).lastrowid
                row = {
                    "id": id, "kind": kind, "data_size": data_size, "raw_header": raw_header, "segment_id": segment_id,
                    "proof": proof, "bundled_in": bundled_in, "leaves": leaves, "created_at": time.time(),
                }  # fmt: skip
                conn.execute(
                    f"INSERT INTO partial_objects({','.join(row)}) VALUES ({','.join('?' * len(row))})", list(row.values())
                )
        except BaseException:
            os.close(fd)
            os.unlink(path)  # not committed: nothing refers to it
            raise
        return PartialWriter(self, row, name, fd, [])

    def partial_info(self, id: str) -> PartialInfo | None:
        """Given an ID, return what is held of it while it is partial, or None."""
        row = self.db.execute("SELECT * FROM partial_objects WHERE id = ?", (id,)).fetchone()
        if row is None:
            return None
        held = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM partial_ranges WHERE id = ?", (id,)
        ).fetchone()
        return PartialInfo(
            id, row["kind"], row["data_size"], held[1], held[0], row["proof"], row["bundled_in"],
            None if row["leaves"] is None else bytes(row["leaves"]),
        )  # fmt: skip

    def partial_ids(self) -> list[str]:
        """Return the IDs of every partially held object."""
        return [r[0] for r in self.db.execute("SELECT id FROM partial_objects ORDER BY created_at")]

    def held_ranges(self, id: str) -> list[tuple[int, int]]:
        """Given a partially held object, return its durable held ranges as (offset, size), in order."""
        rows = self.db.execute("SELECT offset, size FROM partial_ranges WHERE id = ? ORDER BY offset", (id,))
        return [(r[0], r[1]) for r in rows]

    def partial_header(self, id: str) -> bytes:
        """Given a partial item's ID, return its candidate (unverified) binary header."""
        row = self.db.execute("SELECT raw_header FROM partial_objects WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise NotFound(id, "partial object")
        return bytes(row[0])

    def read_partial(self, id: str, start: int, end: int) -> Iterator[bytes]:
        """Given a partial object proven chunk by chunk and a span it holds, yield its verified bytes.

        Raises NotFound when a byte of the span is not held (or the object is not servable yet).
        """
        row = self.db.execute("SELECT proof FROM partial_objects WHERE id = ?", (id,)).fetchone()
        if row is None or row["proof"] != "chunks":
            raise NotFound(id, "servable partial object")
        return self.held_pieces(id, start, end)

    def held_pieces(self, id: str, start: int, end: int) -> Iterator[bytes]:
        """Given a partial object and a span, yield its held bytes, verified (any proof kind: for fsck)."""
        row = self.db.execute("SELECT segment_id FROM partial_objects WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise NotFound(id, "partial object")
        ranges = self.db.execute(
            "SELECT offset, size, hash FROM partial_ranges WHERE id = ? AND offset < ? AND offset + size > ?"
            " ORDER BY offset",
            (id, end, start),
        ).fetchall()
        pos = start
        for r in ranges:
            if r["offset"] > pos:
                break
            pos = r["offset"] + r["size"]
        if pos < end:
            raise NotFound(id, f"bytes {start}-{end} of")
        return self._pieces(id, row["segment_id"], ranges, start, end)

    def _pieces(self, id: str, segment_id: int, ranges: list[sqlite3.Row], start: int, end: int) -> Iterator[bytes]:
        with self.segments.opened(segment_id) as fd:
            for r in ranges:
                data = os.pread(fd, r["size"], r["offset"])
                # Security: held bytes leave only when they still hash to what was proven.
                if len(data) != r["size"] or blake3.blake3(data).digest() != bytes(r["hash"]):
                    raise CorruptChunk(id, -1, bytes(r["hash"]).hex(), f"held range at {r['offset']} changed on disk")
                lo, hi = max(start - r["offset"], 0), min(end - r["offset"], r["size"])
                yield data[lo:hi]

    def abandon_partial(self, id: str, writer: PartialWriter | None = None) -> None:
        """Given a partial object, drop what is held of it (a tx keeps its verified header)."""
        row = self.db.execute("SELECT segment_id FROM partial_objects WHERE id = ?", (id,)).fetchone()
        if writer is not None:
            writer.release()
        if row is None:
            return
        name = self.segments.name(row["segment_id"])
        with transaction(self.db) as conn:
            conn.execute("DELETE FROM partial_ranges WHERE id = ?", (id,))
            conn.execute("DELETE FROM partial_objects WHERE id = ?", (id,))
            referenced = conn.execute("SELECT 1 FROM chunks WHERE segment_id = ? LIMIT 1", (row["segment_id"],)).fetchone()
            if referenced is None:
                conn.execute("DELETE FROM segments WHERE id = ?", (row["segment_id"],))
        if referenced is None:
            self.segments.forget(row["segment_id"])
            try:
                os.unlink(self.segments.folder / name)
            except FileNotFoundError:
                pass


def _locked(path: Path, id: str) -> int:
    """Open a partial segment for writing and flock it; PartialBusy when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        raise StoreError(f"{id}: the segment of the partial object is missing (run fsck)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PartialBusy(f"{id} is being fetched by another process") from None
    return fd


def _reserve(fd: int, size: int) -> None:
    """Give the segment its full size up front (allocated where the file system can)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (95, 22):  # EOPNOTSUPP, EINVAL: a sparse file will do
            raise
        os.ftruncate(fd, size)
