"""Unbundling: ANS-104 binary bundles become individually indexed data items.

Each item inside is verified (header parses, ID matches the bundle index, the
signature covers its data) before it is indexed under its own ID with
``bundled_in``; its data stays where it is, a range of the parent's bytes.
An item that fails is refused (not indexed); its siblings still are.

The parent is committed with ``bundle_state = 'pending'`` first and flipped to
'done' once its items are in, so a crash in between is finished on the next open.

Security: a bundle is a stranger's bytes, so nothing in it may fail the put that stored
it or the open that resumes it. Each refused item is recorded (table bundle_refusals,
``Store.refusals``) with its reason; an unexpected error while unbundling is logged,
recorded against the bundle, and leaves it 'failed' (fsck reports it), never raised.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator

from permastore.protocol import ans104, bundle
from permastore.protocol.deephash import BlobHasher
from permastore.protocol.errors import ProtocolError
from permastore.protocol.tags import Tag
from permastore.store.connections import IndexConnections
from permastore.store.errors import StoreError
from permastore.store.index import insert_object, transaction
from permastore.store.object_reader import ObjectReader
from permastore.store.object_rows import HEADER_READ, MAX_ITEM_HEADER, item_row
from permastore.store.records import ObjectInfo

log = logging.getLogger(__name__)

BUNDLE_FORMAT = (b"bundle-format", b"binary")
BUNDLE_VERSION = (b"bundle-version", b"2.0.0")
MAX_NESTING = 8
BATCH = 200
# Refusals kept in memory for last_bundle_refusals; every one is in the table all the same.
MAX_KEPT_REFUSALS = 1000
MAX_REASON_CHARS = 500
# Items are read through a window of this many verified bytes: a bundle of many small items
# costs one chunk verification per chunk, not two per item.
WINDOW_BYTES = 1024 * 1024


def is_bundle(tags: list[Tag]) -> bool:
    """Given tags, return True when they mark ANS-104 binary bundle data (version 2.0.0)."""
    pairs = {(bytes(t.name).lower(), bytes(t.value)) for t in tags}
    return BUNDLE_FORMAT in pairs and BUNDLE_VERSION in pairs


class Refusals:
    """The (item ID, reason) pairs refused while unbundling: written to the index in batches,
    the first MAX_KEPT_REFUSALS kept in memory, so a bundle of a million bad items costs no memory."""

    def __init__(self, index: IndexConnections):
        self.index = index
        self.kept: list[tuple[str, str]] = []
        self.count = 0
        self._rows: list[tuple[str, str, str, float]] = []

    def add(self, bundle_id: str, item_id: str, reason: str) -> None:
        reason = reason[:MAX_REASON_CHARS]
        self.count += 1
        if len(self.kept) < MAX_KEPT_REFUSALS:
            self.kept.append((item_id, reason))
        self._rows.append((bundle_id, item_id, reason, time.time()))
        if len(self._rows) >= BATCH:
            self.flush()

    def flush(self, conn: sqlite3.Connection | None = None) -> None:
        """Write the buffered refusals (inside ``conn``'s transaction when given)."""
        rows, self._rows = self._rows, []
        if not rows:
            return
        sql = "INSERT OR REPLACE INTO bundle_refusals(bundle_id, item_id, reason, created_at) VALUES (?, ?, ?, ?)"
        if conn is not None:
            conn.executemany(sql, rows)
            return
        with transaction(self.index.db) as own:
            own.executemany(sql, rows)


class VerifiedWindow:
    """Reads of one stored object at increasing offsets, served from the last verified window.

    Every byte handed out came from ``ObjectReader.read`` (each chunk checked against its address).
    """

    def __init__(self, reader: ObjectReader, id: str, size: int):
        self.reader, self.id, self.size = reader, id, size
        self.start, self.data = 0, b""

    def read_at(self, offset: int, n: int) -> bytes:
        """Given an offset and a length, return those bytes (fewer at the end of the object)."""
        end = min(offset + n, self.size)
        if offset >= end:
            return b""
        if not (self.start <= offset and end <= self.start + len(self.data)):
            load_end = min(max(end, offset + WINDOW_BYTES), self.size)
            self.data, self.start = b"", offset
            self.data = b"".join(self.reader.read(self.id, offset, load_end))
        return self.data[offset - self.start : end - self.start]

    def pieces(self, start: int, end: int) -> Iterator[bytes]:
        """Yield the bytes of [start, end): from the window when they fit one, else streamed."""
        if end - start <= WINDOW_BYTES:
            yield self.read_at(start, end - start)
        else:
            yield from self.reader.read(self.id, start, end)


class Unbundler:
    """Given the index and the reader, unbundle bundles as they are stored and resume after a crash.

    ``last_bundle_refusals``: the (item ID, reason) pairs of the last top-level unbundling.
    """

    def __init__(self, index: IndexConnections, reader: ObjectReader):
        self.index = index
        self.reader = reader
        self.last_bundle_refusals: list[tuple[str, str]] = []

    def unbundle(self, info: ObjectInfo | None, depth: int = 0, refusals: Refusals | None = None) -> None:
        """Given a stored object, index the items inside when it is a bundle not yet unbundled.

        Never raises: whatever goes wrong is logged and recorded (see the module docstring).
        """
        top = refusals is None
        if refusals is None:
            refusals = Refusals(self.index)
        try:
            self._unbundle_once(info, depth, refusals)
        except Exception as exc:  # the parent is committed; a failure here must not undo or hide that
            log.exception("bundle %s: unbundling stopped", getattr(info, "id", "?"))
            self._mark_failed(info, refusals, exc)
        if top:
            self.last_bundle_refusals = refusals.kept

    def _unbundle_once(self, info: ObjectInfo | None, depth: int, refusals: Refusals) -> None:
        if info is None or not info.data_complete or not is_bundle(info.tags):
            return
        row = self.reader.row(info.id)
        if row["bundle_state"] in ("done", "failed"):
            return
        if row["bundle_state"] is None:
            with transaction(self.index.db) as conn:
                conn.execute("UPDATE objects SET bundle_state = 'pending' WHERE seq = ?", (info.seq,))
        self._unbundle(info, depth, refusals)
        with transaction(self.index.db) as conn:
            refusals.flush(conn)
            conn.execute("UPDATE objects SET bundle_state = 'done' WHERE seq = ?", (info.seq,))

    def _mark_failed(self, info: ObjectInfo | None, refusals: Refusals, exc: Exception) -> None:
        if info is None:
            return  # nothing was unbundled (_unbundle_once returns at once for None)
        try:
            refusals.add(info.id, info.id, f"unbundling failed: {type(exc).__name__}: {exc}")
            with transaction(self.index.db) as conn:
                refusals.flush(conn)
                conn.execute("UPDATE objects SET bundle_state = 'failed' WHERE id = ?", (info.id,))
        except Exception:  # e.g. the disk is full: the bundle stays pending and is retried at open
            log.exception("bundle %s: could not record the unbundling failure", info.id)

    def resume(self) -> None:
        """Finish the unbundling of bundles left 'pending' by a process that died meanwhile."""
        for (id,) in self.index.db.execute("SELECT id FROM objects WHERE bundle_state = 'pending'").fetchall():
            try:
                self.unbundle(self.reader.info(id))
            except Exception:  # security: nothing a stranger uploaded may stop the store from opening
                log.exception("bundle %s: not resumed", id)

    def refusals(self, id: str | None = None, bundle_id: str | None = None, limit: int = -1) -> list[tuple]:
        """Return recorded refusals as (bundle ID, item ID, reason), oldest first: of one item ID,
        of one bundle, or all (up to ``limit``); a bundle that failed as a whole has its own ID as item."""
        sql = "SELECT bundle_id, item_id, reason FROM bundle_refusals"
        args: tuple[str, ...] = ()
        if id is not None:
            sql, args = sql + " WHERE item_id = ?", (id,)
        elif bundle_id is not None:
            sql, args = sql + " WHERE bundle_id = ?", (bundle_id,)
        rows = self.index.db.execute(sql + " ORDER BY created_at, rowid LIMIT ?", (*args, limit)).fetchall()
        return [tuple(row) for row in rows]

    def _unbundle(self, parent: ObjectInfo, depth: int, refusals: Refusals) -> None:
        """Given a stored bundle, index each valid item in it; record those refused."""
        if depth >= MAX_NESTING:
            refusals.add(parent.id, parent.id, f"bundles nested deeper than {MAX_NESTING} are not unbundled")
            return
        try:
            entries = bundle.iter_bundle_index(lambda o, n: self.reader.read_range(parent.id, o, n), parent.data_size)
        except (ProtocolError, StoreError) as exc:
            log.warning("bundle %s not unbundled: %s", parent.id, exc)
            refusals.add(parent.id, parent.id, str(exc))
            return
        rows: list[tuple[dict, list[Tag]]] = []
        nested: list[str] = []
        window = VerifiedWindow(self.reader, parent.id, parent.data_size)
        for entry in entries:
            try:
                found = self._verified_entry(parent, entry, window)
            except (ProtocolError, StoreError) as exc:
                refusals.add(parent.id, entry.id, str(exc))
                log.warning("bundle %s: item %s refused: %s", parent.id, entry.id, exc)
                continue
            except Exception as exc:  # a bug or a library surprise: refuse this item, keep its siblings
                refusals.add(parent.id, entry.id, f"unexpected error: {type(exc).__name__}: {exc}")
                log.exception("bundle %s: item %s refused on an unexpected error", parent.id, entry.id)
                continue
            if found is not None:
                rows.append(found)
            if len(rows) >= BATCH:
                nested += self._index_items(rows)
                rows = []
        nested += self._index_items(rows)
        for id in nested:
            self.unbundle(self.reader.info(id), depth + 1, refusals)

    def _verified_entry(self, parent: ObjectInfo, entry: bundle.BundleEntry,
                        window: VerifiedWindow) -> tuple[dict, list[Tag]] | None:  # fmt: skip
        """Given a bundle entry, return (row, tags) for a verified new item, None if already stored."""
        if self.reader.info(entry.id) is not None:
            return None
        probe = window.read_at(entry.offset, min(entry.size, HEADER_READ))
        size = ans104.header_size_of(probe)
        if size is None and entry.size > len(probe):
            probe = window.read_at(entry.offset, min(entry.size, MAX_ITEM_HEADER))
            size = ans104.header_size_of(probe)
        if size is None or size > entry.size:
            raise ProtocolError(f"item {entry.id}: header does not fit in its {entry.size} bytes")
        header = ans104.parse_header(probe[:size])
        # Security: the ID in the bundle index must be the item's own (sha256 of its signature).
        if header.id != entry.id:
            raise ProtocolError(f"bundle index says {entry.id} but the item's ID is {header.id}")
        hasher = BlobHasher()
        start = entry.offset + size
        for piece in window.pieces(start, entry.offset + entry.size):
            hasher.update(piece)
        ans104.verify_header(header, hasher.digest())
        row = item_row(header, probe[:size], entry.size - size) | {
            "bundled_in": parent.id,
            "data_parent": parent.id,
            "data_parent_offset": start,
            "height": parent.height,
            "block_hash": parent.block_hash,
        }
        return row, header.tags

    def _index_items(self, rows: list[tuple[dict, list[Tag]]]) -> list[str]:
        """Insert verified items in one transaction; return the IDs of those that are bundles."""
        nested: list[str] = []
        if not rows:
            return nested
        with transaction(self.index.db) as conn:
            for row, tags in rows:
                if conn.execute("SELECT 1 FROM objects WHERE id = ?", (row["id"],)).fetchone():
                    continue  # the same item in two bundles: first one wins
                insert_object(conn, row, tags)
                if is_bundle(tags):
                    nested.append(row["id"])
        return nested
