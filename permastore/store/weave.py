"""The weave as this node keeps it: L1 txs' global byte offsets, chunk proofs, and blocks.

Offsets are 0-based. Each format-2 L1 tx takes the next ``data_size`` bytes of the
weave when its data is complete here (a header waiting for its chunks takes none, so a
huge claimed data_size moves no other tx's offset); its ``weave_offset`` is the offset of its last byte (what
``GET /tx/{id}/offset`` reports), so its first byte is ``weave_offset - data_size + 1``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time

from permastore.protocol import b64url, merkle
from permastore.protocol.deephash import deep_hash
from permastore.store.connections import IndexConnections
from permastore.store.errors import NotFound, StoreError
from permastore.store.index import transaction
from permastore.store.object_reader import ObjectReader
from permastore.store.records import Block, WeaveChunk

PROOF_CACHE_SIZE = 16
_EMPTY_SHA256 = hashlib.sha256(b"").digest()


def assign_weave_range(conn: sqlite3.Connection, seq: int, tx_format: int | None, data_size: int) -> None:
    """Inside a write transaction: give a tx whose data just became complete the next weave bytes."""
    if tx_format != 2 or data_size <= 0:
        return
    if conn.execute("SELECT weave_offset FROM objects WHERE seq = ?", (seq,)).fetchone()[0] is not None:
        return
    # Weave offsets are 0-based; a tx's weave_offset is its last byte, as /tx/{id}/offset says.
    start = conn.execute("SELECT value FROM meta WHERE key = 'weave_size'").fetchone()[0]
    end = start + data_size
    conn.execute("UPDATE meta SET value = ? WHERE key = 'weave_size'", (end,))
    conn.execute("UPDATE objects SET weave_offset = ? WHERE seq = ?", (end - 1, seq))


class WeaveIndex:
    """Given the index and the reader: chunk proofs, weave offsets, blocks.

    Owns a small cache of chunk proofs (the gateway's threads share it).
    """

    def __init__(self, index: IndexConnections, reader: ObjectReader):
        self.index = index
        self.reader = reader
        self._proofs: dict[str, list[merkle.Proof]] = {}
        self._proofs_lock = threading.Lock()

    def weave_size(self) -> int:
        """Return the number of weave bytes given out to L1 txs so far."""
        return self.index.db.execute("SELECT value FROM meta WHERE key = 'weave_size'").fetchone()[0]

    def chunk_proofs(self, id: str) -> list[merkle.Proof]:
        """Given an L1 tx ID with data, return one merkle Proof (data_path) per non-empty chunk."""
        cached = self._proofs.get(id)
        if cached is not None:
            return cached
        row = self.reader.row(id)
        chunks = self._leaf_chunks(row)
        if row["data_size"] % merkle.MAX_CHUNK_SIZE == 0:
            chunks.append(merkle.Chunk(_EMPTY_SHA256, row["data_size"], row["data_size"]))
        if merkle.compute_root(chunks) != bytes(row["data_root"]):
            raise StoreError(f"tx {id}: stored chunks do not rebuild its data_root")
        proofs = [p for p, c in zip(merkle.build_proofs(chunks), chunks) if c.max_byte_range > c.min_byte_range]
        with self._proofs_lock:  # the cache is shared by the gateway's threads
            while len(self._proofs) >= PROOF_CACHE_SIZE:
                self._proofs.pop(next(iter(self._proofs)))
            self._proofs[id] = proofs
        return proofs

    def chunk_leaves(self, id: str) -> list[merkle.Chunk]:
        """Given a stored L1 tx with data, return its non-empty chunks (merkle.Chunk: SHA-256 and range)."""
        return self._leaf_chunks(self.reader.row(id))

    def _leaf_chunks(self, row: sqlite3.Row) -> list[merkle.Chunk]:
        if row["kind"] != "tx" or row["format"] != 2 or row["data_size"] == 0:
            raise StoreError(f"{row['id']} has no chunked data (only format-2 L1 txs with data do)")
        if not row["data_complete"]:
            raise NotFound(row["id"], "data of")
        return [merkle.Chunk(sha, start, start + size) for start, size, sha in self._chunk_hashes(row)]

    def _chunk_hashes(self, row: sqlite3.Row) -> list[tuple[int, int, bytes]]:
        """(offset, size, sha256) of each stored chunk; SHA-256s missing from the index are computed."""
        rows = self.index.db.execute(
            "SELECT c.idx, c.offset, c.size, c.hash, k.sha256 FROM object_chunks c"
            " LEFT JOIN chunks k ON k.hash = c.hash WHERE c.seq = ? ORDER BY c.idx",
            (row["seq"],),
        ).fetchall()
        out = []
        for chunk in rows:
            sha = chunk["sha256"]
            if sha is None:
                data = self.reader.read_range(row["id"], chunk["offset"], chunk["size"])
                sha = hashlib.sha256(data).digest()
            out.append((chunk["offset"], chunk["size"], bytes(sha)))
        return out

    def chunk_at_weave_offset(self, offset: int) -> WeaveChunk:
        """Given a 0-based weave offset, return the chunk holding it, its data_path and its tx."""
        db = self.index.db
        row = db.execute(
            "SELECT * FROM objects WHERE kind = 'tx' AND weave_offset >= ? ORDER BY weave_offset LIMIT 1",
            (offset,),
        ).fetchone()
        if row is None or offset < 0 or offset <= row["weave_offset"] - row["data_size"]:
            raise NotFound(str(offset), "chunk at weave offset")
        relative = offset - (row["weave_offset"] - row["data_size"] + 1)
        proofs = self.chunk_proofs(row["id"])
        chunk = next(
            (c for c in db.execute(
                "SELECT offset, size FROM object_chunks WHERE seq = ? AND offset <= ? ORDER BY offset DESC LIMIT 1",
                (row["seq"], relative),
            )),
            None,
        )  # fmt: skip
        if chunk is None:
            raise NotFound(str(offset), "chunk at weave offset")
        end = chunk["offset"] + chunk["size"]
        proof = next(p for p in proofs if p.offset == end - 1)
        data = self.reader.read_range(row["id"], chunk["offset"], chunk["size"])
        return WeaveChunk(
            chunk=data,
            data_path=proof.proof,
            tx_id=row["id"],
            tx_data_root=bytes(row["data_root"]),
            tx_data_size=row["data_size"],
            offset_in_tx=chunk["offset"],
        )

    def mine_block(self, timestamp: int | None = None) -> Block:
        """Put every object without a height into a new block; return the block.

        The block lists the L1 txs it holds; data items (bundled or uploaded here) get
        the same height so height queries see them.
        """
        conn = self.index.db
        with transaction(conn):
            previous = conn.execute("SELECT * FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
            height = previous["height"] + 1 if previous else 0
            prev_hash = previous["indep_hash"] if previous else ""
            stamp = int(time.time()) if timestamp is None else int(timestamp)
            tx_ids = [
                r[0] for r in conn.execute("SELECT id FROM objects WHERE height IS NULL AND kind = 'tx' ORDER BY seq")
            ]
            weave = conn.execute("SELECT value FROM meta WHERE key = 'weave_size'").fetchone()[0]
            indep_hash = b64url.encode(
                deep_hash([str(height).encode(), prev_hash.encode(), str(stamp).encode(), str(weave).encode(),
                           [t.encode() for t in tx_ids]])
            )  # fmt: skip
            conn.execute(
                "INSERT INTO blocks(height, indep_hash, previous, timestamp, weave_size, tx_ids) VALUES (?,?,?,?,?,?)",
                (height, indep_hash, prev_hash, stamp, weave, json.dumps(tx_ids)),
            )
            conn.execute("UPDATE objects SET height = ?, block_hash = ? WHERE height IS NULL", (height, indep_hash))
        return Block(height, indep_hash, prev_hash, stamp, weave, tx_ids)

    def block(self, height: int | None = None, indep_hash: str | None = None) -> Block | None:
        """Given a height or an indep_hash, return that block, or None."""
        db = self.index.db
        if indep_hash is not None:
            row = db.execute("SELECT * FROM blocks WHERE indep_hash = ?", (indep_hash,)).fetchone()
        else:
            row = db.execute("SELECT * FROM blocks WHERE height = ?", (height,)).fetchone()
        return _block(row)

    def current_block(self) -> Block | None:
        """Return the highest block, or None before the first is mined."""
        return _block(self.index.db.execute("SELECT * FROM blocks ORDER BY height DESC LIMIT 1").fetchone())


def _block(row: sqlite3.Row | None) -> Block | None:
    if row is None:
        return None
    tx_ids = json.loads(row["tx_ids"])
    return Block(row["height"], row["indep_hash"], row["previous"], row["timestamp"], row["weave_size"], tx_ids)
