"""Unbundling: ANS-104 binary bundles become individually indexed data items.

Each item inside is verified (header parses, ID matches the bundle index, the
signature covers its data) before it is indexed under its own ID with
``bundled_in``; its data stays where it is, a range of the parent's bytes.
An item that fails is refused (not indexed); its siblings still are.

The parent is committed with ``bundle_state = 'pending'`` first and flipped to
'done' once its items are in, so a crash in between is finished on the next open.
"""

from __future__ import annotations

import logging

from permastore.protocol.deephash import BlobHasher
from permastore.protocol.errors import ProtocolError
from permastore.store.errors import StoreError
from permastore.store.index import insert_object, transaction
from permastore.store.items import HEADER_READ, MAX_ITEM_HEADER, item_row

log = logging.getLogger(__name__)

BUNDLE_FORMAT = (b"bundle-format", b"binary")
BUNDLE_VERSION = (b"bundle-version", b"2.0.0")
MAX_NESTING = 8
BATCH = 200


def is_bundle(tags) -> bool:
    """Given tags, return True when they mark ANS-104 binary bundle data (version 2.0.0)."""
    pairs = {(bytes(t.name).lower(), bytes(t.value)) for t in tags}
    return BUNDLE_FORMAT in pairs and BUNDLE_VERSION in pairs


class Unbundler:
    """Store mixin: unbundle bundles as they are stored, resume after a crash."""

    def _maybe_unbundle(self, info, depth: int = 0) -> None:
        if info is None or not info.data_complete or not is_bundle(info.tags):
            return
        row = self._row(info.id)
        if row["bundle_state"] == "done":
            return
        if row["bundle_state"] is None:
            with transaction(self.db) as conn:
                conn.execute("UPDATE objects SET bundle_state = 'pending' WHERE seq = ?", (info.seq,))
        self.last_bundle_refusals = self._unbundle(info, depth)
        with transaction(self.db) as conn:
            conn.execute("UPDATE objects SET bundle_state = 'done' WHERE seq = ?", (info.seq,))

    def _resume_unbundling(self) -> None:
        for (id,) in self.db.execute("SELECT id FROM objects WHERE bundle_state = 'pending'").fetchall():
            self._maybe_unbundle(self.info(id))

    def _unbundle(self, parent, depth: int) -> list[tuple[str, str]]:
        """Given a stored bundle, index each valid item in it; return (id, reason) of those refused."""
        from permastore.protocol import bundle

        if depth >= MAX_NESTING:
            return [(parent.id, f"bundles nested deeper than {MAX_NESTING} are not unbundled")]
        try:
            entries = bundle.parse_bundle_index(lambda o, n: self.read_range(parent.id, o, n), parent.data_size)
        except (ProtocolError, StoreError) as exc:
            log.warning("bundle %s not unbundled: %s", parent.id, exc)
            return [(parent.id, str(exc))]
        refused, rows, nested = [], [], []
        for entry in entries:
            try:
                found = self._verified_entry(parent, entry)
            except (ProtocolError, StoreError) as exc:
                refused.append((entry.id, str(exc)))
                log.warning("bundle %s: item %s refused: %s", parent.id, entry.id, exc)
                continue
            if found is not None:
                rows.append(found)
            if len(rows) >= BATCH:
                nested += self._index_items(rows)
                rows = []
        nested += self._index_items(rows)
        for id in nested:
            self._maybe_unbundle(self.info(id), depth + 1)
        return refused

    def _verified_entry(self, parent, entry):
        """Given a bundle entry, return (row, tags) for a verified new item, None if already stored."""
        from permastore.protocol import ans104

        if self.info(entry.id) is not None:
            return None
        probe = self.read_range(parent.id, entry.offset, min(entry.size, HEADER_READ))
        size = ans104.header_size_of(probe)
        if size is None and entry.size > len(probe):
            probe = self.read_range(parent.id, entry.offset, min(entry.size, MAX_ITEM_HEADER))
            size = ans104.header_size_of(probe)
        if size is None or size > entry.size:
            raise ProtocolError(f"item {entry.id}: header does not fit in its {entry.size} bytes")
        header = ans104.parse_header(probe[:size])
        # Security: the ID in the bundle index must be the item's own (sha256 of its signature).
        if header.id != entry.id:
            raise ProtocolError(f"bundle index says {entry.id} but the item's ID is {header.id}")
        hasher = BlobHasher()
        start = entry.offset + size
        for piece in self.read(parent.id, start, entry.offset + entry.size):
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

    def _index_items(self, rows) -> list[str]:
        """Insert verified items in one transaction; return the IDs of those that are bundles."""
        nested = []
        if not rows:
            return nested
        with transaction(self.db) as conn:
            for row, tags in rows:
                if conn.execute("SELECT 1 FROM objects WHERE id = ?", (row["id"],)).fetchone():
                    continue  # the same item in two bundles: first one wins
                insert_object(conn, row, tags)
                if is_bundle(tags):
                    nested.append(row["id"])
        return nested
