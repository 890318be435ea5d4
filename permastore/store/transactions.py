"""Layer-1 transactions: stored with their data, or pending until POST /chunk completes them.

The signature is checked before any byte is written; the data must rebuild the signed
data_root (and data_size) before the index commit; posted chunks must prove their place
under data_root with a valid data_path before they are stored.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from typing import Any

import blake3

from permastore.protocol import b64url, merkle
from permastore.protocol.errors import InvalidProof, LimitExceeded
from permastore.protocol.tx import Transaction
from permastore.protocol.tx import verify as verify_tx
from permastore.store import chunk_layout, codec
from permastore.store.commits import ObjectCommitter
from permastore.store.connections import IndexConnections
from permastore.store.errors import DataMismatch, NotFound
from permastore.store.index import insert_chunk_list, transaction
from permastore.store.ingest import Ingested, NewChunk
from permastore.store.known_copies import KnownCopies
from permastore.store.object_reader import ObjectReader
from permastore.store.object_rows import tx_row
from permastore.store.records import ObjectInfo
from permastore.store.weave import assign_weave_range

__all__ = ["DEFAULT_MAX_DATA_SIZE", "TxWriter"]

# The largest data_size a tx may claim here (a signed header costs a stranger nothing).
DEFAULT_MAX_DATA_SIZE = 64 * 1024**3


class TxWriter:
    """Given the index, the committer, the reader and the known-copy check: ``put_tx`` and ``put_chunk``.

    ``max_data_size`` (a store-level setting; set it on the opened Store) bounds the data
    a tx may claim: anything larger is refused before any work is done for it.
    """

    def __init__(self, index: IndexConnections, committer: ObjectCommitter, reader: ObjectReader,
                 known: KnownCopies):  # fmt: skip
        self.index = index
        self.committer = committer
        self.reader = reader
        self.known = known
        self.max_data_size = DEFAULT_MAX_DATA_SIZE

    def check_data_size(self, data_size: int) -> None:
        """Given a claimed data size, raise LimitExceeded (a 400) when it is past ``max_data_size``."""
        if not 0 <= data_size <= self.max_data_size:
            raise LimitExceeded(f"data_size {str(data_size)[:40]} is more than this node's limit of {self.max_data_size} bytes")

    def put_tx(self, tx: Transaction, data: Any = None, progress: Callable | None = None) -> ObjectInfo:
        """Given a signed L1 tx and its data (stream, bytes, or None for chunks to come), store it.

        The data must match the tx's data_size and data_root; nothing is stored otherwise.
        """
        self.check_data_size(tx.data_size)
        # Security: the ID and signature are checked before any byte is written.
        verify_tx(tx)
        if tx.format == 1 or tx.data:
            data = tx.data
        existing = self.reader.info(tx.id)
        if existing is not None:  # a known ID proves nothing: the copy must be the stored tx
            self.known.check_known_tx(tx, data if existing.data_complete else None)
        if existing is not None and (existing.data_complete or data is None):
            self.committer.publish(existing)  # with a bucket: a put that failed there before is retried
            return existing
        if existing is not None:
            return self._complete_tx(existing, tx, data, progress)
        row = tx_row(tx)
        if tx.data_size == 0:
            return self.commit_tx(None, row, tx)
        if data is None:
            row["data_complete"] = 0
            return self.commit_tx(None, row, tx)
        ingested = self._ingest_tx_data(tx, data, progress)
        return self.commit_tx(ingested, row, tx)

    def _ingest_tx_data(self, tx: Transaction, data: Any, progress: Callable | None) -> Ingested:
        ingested = self.committer.ingest(data, want_deep_hash=False, want_sha256=True, progress=progress)
        if ingested.size != tx.data_size:
            ingested.discard()
            raise DataMismatch(f"tx {tx.id}: data is {ingested.size} bytes, data_size says {tx.data_size}")
        # Format 1 has no data_root: its data is covered by the signature itself.
        if tx.format == 2 and ingested.data_root != tx.data_root:
            ingested.discard()
            raise DataMismatch(f"tx {tx.id}: data does not match its data_root")
        return ingested

    def commit_tx(self, ingested: Ingested | None, row: dict, tx: Transaction) -> ObjectInfo:
        """Given a verified tx's ingested data (None: no data here) and its row, commit it; return its info."""

        def assign_weave_offset(conn: sqlite3.Connection, seq: int) -> None:
            if row["data_complete"]:
                # Weave space is given only to data that is here: a pending header, whatever
                # data_size it claims, moves no other tx's offset.
                assign_weave_range(conn, seq, tx.format, tx.data_size)
            else:
                self._try_complete(conn, tx.data_root, tx.data_size)

        if ingested is None:
            ingested = Ingested()
        return self.committer.commit(ingested, row, tx.tags, assign_weave_offset)

    def _complete_tx(self, existing: ObjectInfo, tx: Transaction, data: Any, progress: Callable | None) -> ObjectInfo:
        """Given a pending tx now uploaded with its data, store the data and mark it complete."""
        ingested = self._ingest_tx_data(tx, data, progress)

        def complete(conn: sqlite3.Connection) -> int:
            seq = existing.seq
            if conn.execute("SELECT data_complete FROM objects WHERE seq = ?", (seq,)).fetchone()[0]:
                return seq  # completed meanwhile by chunks
            insert_chunk_list(conn, seq, ingested.chunk_list)
            conn.execute("UPDATE objects SET data_complete = 1 WHERE seq = ?", (seq,))
            assign_weave_range(conn, seq, tx.format, tx.data_size)
            return seq

        try:
            if ingested.segment is not None:
                self.committer.commit_segment_with(ingested, complete)
            elif ingested.new_chunks:
                self.committer.store_new_chunks(ingested.new_chunks, complete)
            else:
                with transaction(self.index.db) as conn:
                    complete(conn)
        except BaseException:
            ingested.discard()
            raise
        info = self.committer.finish(tx.id)  # indexes the items inside; the tx's info stays as it is
        assert info is not None  # completed above
        return info

    def put_chunk(self, data_root: bytes, data_size: int, offset: int, chunk: bytes, data_path: bytes) -> None:
        """Given a chunk of a pending L1 tx and its data_path, validate and store it.

        The proof must lead to data_root and the chunk must hash to the proven leaf.
        """
        # Security: cheap checks first, nothing sized by the claimed data_size: the size must be
        # within the limit and a stored tx must have this data_root and size.
        self.check_data_size(data_size)
        conn = self.index.db
        rows = conn.execute(
            "SELECT id, data_complete FROM objects WHERE kind = 'tx' AND data_root = ? AND data_size = ?",
            (data_root, data_size),
        ).fetchall()
        if not rows:
            raise NotFound(b64url.encode(data_root), "transaction with data_root")
        if all(row["data_complete"] for row in rows):
            # Every tx with this data is already whole: nothing to add. With a bucket, a retry
            # after a failed publication publishes it before it is acknowledged (skipped when there).
            for row in rows:
                self.committer.publish_id(row["id"])
            return
        # Security: proof validated and chunk hash matched before anything is stored.
        proven = merkle.validate_path(data_root, offset, 0, data_size, data_path)
        if len(chunk) != proven.chunk_size or hashlib.sha256(chunk).digest() != proven.data_hash:
            raise InvalidProof("chunk bytes do not match the data_path's leaf")
        if not chunk_layout.is_chunk(data_size, proven.left_bound, proven.right_bound):
            raise InvalidProof("chunk bounds do not follow Arweave chunking of data_size")
        address = blake3.blake3(chunk).digest()
        kind, stored = codec.encode(chunk)
        new = NewChunk(address, len(chunk), kind, stored, stored_size=len(stored), sha256=proven.data_hash)

        def record(conn: sqlite3.Connection) -> Any:
            conn.execute(
                "INSERT OR IGNORE INTO pending_chunks(data_root, data_size, offset, hash) VALUES (?, ?, ?, ?)",
                (data_root, data_size, proven.left_bound, address),
            )
            conn.execute("UPDATE chunks SET sha256 = ? WHERE hash = ? AND sha256 IS NULL", (proven.data_hash, address))
            return self._try_complete(conn, data_root, data_size)

        if self.index.known_chunk(address):
            with transaction(conn):
                completed = record(conn)
        else:
            completed = self.committer.store_new_chunks([new], record)
        for id in completed:
            self.committer.finish(id)  # with a bucket: the completing chunk is acknowledged once it is there

    def _try_complete(self, conn: sqlite3.Connection, data_root: bytes, data_size: int) -> list[str]:
        """Inside a transaction: when every chunk of data_root is here, complete its pending txs."""
        chunk_list = self._chunk_list_from_complete(conn, data_root, data_size)
        if chunk_list is None:
            # Counted first: the chunk list is built only once it is whole (and its size bounded).
            held = conn.execute(
                "SELECT COUNT(*) FROM pending_chunks WHERE data_root = ? AND data_size = ?", (data_root, data_size)
            ).fetchone()[0]
            if held < chunk_layout.chunk_count(data_size):
                return []
            got = dict(
                conn.execute(
                    "SELECT offset, hash FROM pending_chunks WHERE data_root = ? AND data_size = ?",
                    (data_root, data_size),
                ).fetchall()
            )
            ranges = [(s, e) for s, e in merkle.chunk_ranges(data_size) if e > s]
            if any(start not in got for start, _ in ranges):
                return []
            chunk_list = [(s, e - s, bytes(got[s]), None) for s, e in ranges]
        pending = conn.execute(
            "SELECT seq, id, format FROM objects WHERE kind = 'tx' AND data_root = ? AND data_size = ?"
            " AND data_complete = 0",
            (data_root, data_size),
        ).fetchall()
        for row in pending:
            insert_chunk_list(conn, row["seq"], chunk_list)
            conn.execute("UPDATE objects SET data_complete = 1 WHERE seq = ?", (row["seq"],))
            assign_weave_range(conn, row["seq"], row["format"], data_size)
        conn.execute("DELETE FROM pending_chunks WHERE data_root = ? AND data_size = ?", (data_root, data_size))
        return [row["id"] for row in pending]

    def _chunk_list_from_complete(self, conn: sqlite3.Connection, data_root: bytes,
                                  data_size: int) -> list[tuple[int, int, bytes, bytes | None]] | None:  # fmt: skip
        """A tx already stored whole with the same data_root shares its chunks (no upload needed)."""
        row = conn.execute(
            "SELECT seq FROM objects WHERE kind = 'tx' AND data_root = ? AND data_size = ? AND data_complete = 1"
            " AND data_parent IS NULL LIMIT 1",
            (data_root, data_size),
        ).fetchone()
        if row is None:
            return None
        rows = conn.execute(
            "SELECT offset, size, hash FROM object_chunks WHERE seq = ? ORDER BY idx", (row["seq"],)
        ).fetchall()
        return [(r["offset"], r["size"], bytes(r["hash"]), None) for r in rows]
