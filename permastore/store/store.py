"""The storage engine's front door: `Store`.

Every put follows the same durable order: chunk bytes written -> segment fsync ->
one SQLite transaction (WAL, synchronous=FULL) for the object row, tags and chunk
list -> return. Nothing is acknowledged before its commit, and nothing committed
points at bytes that were not fsynced first.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Callable, Iterator

import blake3

from permastore.protocol import b64url, merkle
from permastore.protocol.errors import InvalidProof, MalformedData
from permastore.protocol.signers import RsaSigner
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, verify as verify_tx
from permastore.store import codec, schema
from permastore.store.errors import DataMismatch, NotFound, StoreError
from permastore.store.index import (
    content_type_of,
    insert_chunk_list,
    insert_object,
    object_row,
    record_chunks,
    to_info,
    tags_of,
    transaction,
)
from permastore.store.ingest import Ingested, NewChunk, PrefixedStream, as_stream, ingest
from permastore.store.query import run_query
from permastore.store.reader import ChunkReader, chunk_rows
from permastore.store.records import ObjectInfo, Page, Query
from permastore.store.segments import (
    SEGMENTS_DIR,
    PackAppender,
    PackLock,
    SegmentReader,
    pack_name,
    remove_orphans,
)
from permastore.store.wallet_file import load_or_create_wallet
from permastore.store.bundles import Unbundler
from permastore.store.export import Exporter
from permastore.store.fsck import Checker
from permastore.store.object_paths import ObjectPaths, remove_stale_views
from permastore.store.weave import Weave

WALLET_FILE = "wallet.json"
OPEN_LOCK = ".open.lock"  # shared while a Store is open; exclusive for the first opener's cleanup
INDEX_FILE = "index.sqlite"
VIEWS_DIR = "views"
# A pack is sealed and a new one started once it would pass this size.
PACK_LIMIT = 1024 * 1024 * 1024
# An ANS-104 header is at most ~0.6 MB (128 tags of 1 KiB + 3 KiB); refuse anything longer.
MAX_ITEM_HEADER = 1024 * 1024
HEADER_READ = 64 * 1024


class Store(ObjectPaths, Unbundler, Weave, Checker, Exporter):
    """A data folder opened for reading and writing; safe to share between threads."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.segments_dir = self.root / SEGMENTS_DIR
        self.views_dir = self.root / VIEWS_DIR
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._lookup_lock = threading.Lock()
        self._segment_names: dict[int, str] = {}
        self._verified_paths: set[str] = set()
        self._proof_cache: dict[str, list] = {}
        self._segments = SegmentReader(self.segments_dir)
        self._chunks = ChunkReader(self._segments, self._segment_name)
        self.wallet: dict = {}
        self._signer: RsaSigner | None = None
        self.last_bundle_refusals: list[tuple[str, str]] = []
        self._open_lock = -1

    # -- opening and closing ---------------------------------------------------------

    @classmethod
    def open(cls, data_dir) -> "Store":
        """Given a data folder (created if missing), return the opened Store."""
        store = cls(Path(data_dir))
        try:
            store._open()
        except (OSError, sqlite3.Error) as exc:
            store.close()
            raise StoreError(f"cannot open data folder {data_dir}: {exc}") from None
        except BaseException:
            store.close()
            raise
        return store

    def _open(self) -> None:
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        self.views_dir.mkdir(exist_ok=True)
        self.wallet = load_or_create_wallet(self.root / WALLET_FILE)
        alone = self._hold_open_lock()
        schema.create_schema(self.db)
        self._lookup = schema.connect(self.root / INDEX_FILE, check_same_thread=False)
        self._remember(self._lookup)
        if alone:
            # Only the first opener may delete debris. A writer killed inside COMMIT leaves a
            # commit in the WAL that live connections do not see but that SQLite's recovery
            # (run when the first connection opens) replays: only then is "not committed" final.
            remove_orphans(self.segments_dir, self._segment_committed)
            remove_stale_views(self.views_dir)
        fcntl.flock(self._open_lock, fcntl.LOCK_SH)
        self._resume_unbundling()

    def _hold_open_lock(self) -> bool:
        """Take the store's open lock; return True when no other Store has the folder open."""
        self._open_lock = os.open(self.root / OPEN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._open_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            fcntl.flock(self._open_lock, fcntl.LOCK_SH)
            return False

    @property
    def signer(self) -> RsaSigner:
        if self._signer is None:
            # Our own wallet file (0600, written by this node): skip the slow key self-check.
            self._signer = RsaSigner(self.wallet, trusted=True)
        return self._signer

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection to the index."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = schema.connect(self.root / INDEX_FILE)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            self._remember(conn)
        return conn

    def _remember(self, conn) -> None:
        with self._connections_lock:
            self._connections.append(conn)

    def close(self) -> None:
        """Close every connection and file this Store opened."""
        with self._connections_lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass  # belongs to a thread that is gone; closed with it
            self._connections.clear()
        self._local = threading.local()
        self._segments.close()
        if self._open_lock >= 0:
            os.close(self._open_lock)
            self._open_lock = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _segment_committed(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM segments WHERE name = ?", (name,)).fetchone() is not None

    def _segment_name(self, segment_id: int) -> str:
        name = self._segment_names.get(segment_id)
        if name is None:
            row = self.db.execute("SELECT name FROM segments WHERE id = ?", (segment_id,)).fetchone()
            if row is None:
                raise StoreError(f"segment {segment_id} is not in the index")
            name = self._segment_names[segment_id] = row["name"]
        return name

    def _segment_file(self, segment_id: int):
        """Context manager: a read descriptor of a segment, open while the block runs."""
        return self._segments.opened(self._segment_name(segment_id))

    def _known_chunk(self, address: bytes) -> bool:
        """Given a BLAKE3 address, return True when a committed chunk has it (any thread)."""
        with self._lookup_lock:
            return self._lookup.execute("SELECT 1 FROM chunks WHERE hash = ?", (address,)).fetchone() is not None

    # -- writing ---------------------------------------------------------------------

    def _ingest(self, data, want_deep_hash: bool, want_sha256: bool, progress=None) -> Ingested:
        return ingest(data, self.segments_dir, self._known_chunk, want_deep_hash, want_sha256, progress)

    def _commit(self, ingested: Ingested, row: dict, tags, after_insert: Callable | None = None) -> ObjectInfo:
        """Given ingested data and the object's row, make both durable; return the stored info.

        If the ID was committed meanwhile (by another writer), the put is idempotent.
        """
        try:
            if ingested.segment is None:
                self._commit_small(ingested, row, tags, after_insert)
            else:
                self._commit_large(ingested, row, tags, after_insert)
        except sqlite3.IntegrityError:
            ingested.discard()
            existing = self.info(row["id"])
            if existing is None:
                raise
            return existing
        except BaseException:
            ingested.discard()  # nothing committed refers to what this put wrote
            raise
        info = self.info(row["id"])
        self._maybe_unbundle(info)
        return self.info(row["id"])

    def _insert_all(self, conn, ingested: Ingested, row: dict, tags, after_insert) -> int:
        seq = insert_object(conn, row, tags)
        if row.get("data_complete") and ingested is not None:
            insert_chunk_list(conn, seq, ingested.chunk_list)
        if after_insert:
            after_insert(conn, seq)
        return seq

    def _commit_large(self, ingested: Ingested, row: dict, tags, after_insert) -> int:
        return self._commit_segment_with(ingested, lambda c: self._insert_all(c, ingested, row, tags, after_insert))

    def _commit_segment_with(self, ingested: Ingested, inside: Callable) -> int:
        """Register a large put's sealed segment and its chunks, and run ``inside``, in one commit."""
        segment = ingested.segment
        conn = self.db
        if segment.size == 0:
            # Every chunk was already stored: the dedicated segment holds nothing.
            segment.discard()
            ingested.segment = None
            with transaction(conn):
                return inside(conn)
        with transaction(conn):
            cursor = conn.execute(
                "INSERT INTO segments(name, kind, committed_size, sealed) VALUES (?, 'object', ?, 1)",
                (segment.name, segment.size),
            )
            record_chunks(conn, cursor.lastrowid, ingested.new_chunks)
            result = inside(conn)
        # Committed: from here on the segment belongs to the store, never to discard().
        ingested.segment = None
        segment.release()
        return result

    def _commit_small(self, ingested: Ingested | None, row: dict, tags, after_insert) -> int:
        conn = self.db
        new_chunks = ingested.new_chunks if ingested else []
        if not new_chunks:
            with transaction(conn):
                return self._insert_all(conn, ingested, row, tags, after_insert)
        with PackLock(self.segments_dir):
            return self._append_to_pack(new_chunks, lambda c: self._insert_all(c, ingested, row, tags, after_insert))

    def _append_to_pack(self, new_chunks: list[NewChunk], inside: Callable) -> int:
        """Under the pack lock: append chunks to the open pack, fsync, then commit with ``inside``."""
        conn = self.db
        incoming = sum(c.stored_size for c in new_chunks)
        pack = conn.execute(
            "SELECT id, name, committed_size FROM segments WHERE kind = 'pack' AND sealed = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        seal_id = None
        if pack is not None and pack["committed_size"] and pack["committed_size"] + incoming > PACK_LIMIT:
            seal_id, pack = pack["id"], None
        if pack is None:
            count = conn.execute("SELECT COUNT(*) FROM segments WHERE kind = 'pack'").fetchone()[0]
            name, pack_id = pack_name(count + 1), None
        else:
            name, pack_id = pack["name"], pack["id"]
        appender = PackAppender(self.segments_dir, name)
        try:
            for chunk in new_chunks:
                chunk.offset = appender.append(chunk.stored)
            appender.sync()
            with transaction(conn):
                if seal_id is not None:
                    conn.execute("UPDATE segments SET sealed = 1 WHERE id = ?", (seal_id,))
                if pack_id is None:
                    cursor = conn.execute(
                        "INSERT INTO segments(name, kind, committed_size) VALUES (?, 'pack', ?)", (name, appender.size)
                    )
                    pack_id = cursor.lastrowid
                else:
                    conn.execute("UPDATE segments SET committed_size = ? WHERE id = ?", (appender.size, pack_id))
                record_chunks(conn, pack_id, new_chunks)
                result = inside(conn)
        finally:
            appender.close()
        if seal_id is not None:
            sealed = conn.execute("SELECT name FROM segments WHERE id = ?", (seal_id,)).fetchone()
            os.chmod(self.segments_dir / sealed["name"], 0o444)
        return result

    def put_data(
        self, stream, tags=(), content_type: str | None = None, target=None, anchor=None, progress=None
    ) -> ObjectInfo:
        """Given plain data, wrap it in an ANS-104 item signed by the node wallet; return its info."""
        from permastore.protocol import ans104

        tags = list(tags)
        if content_type and content_type_of(tags) is None:
            tags.append(Tag(b"Content-Type", content_type.encode("utf-8")))
        _check_tags(tags)
        ingested = self._ingest(stream, want_deep_hash=True, want_sha256=False, progress=progress)
        try:
            header_bytes = ans104.build_header(self.signer, ingested.blob_hash, tags, target=target, anchor=anchor)
            header = ans104.parse_header(header_bytes)
        except BaseException:
            ingested.discard()
            raise
        return self._commit(ingested, _item_row(header, header_bytes, ingested.size), header.tags)

    def put_item(self, stream, progress=None) -> ObjectInfo:
        """Given a signed binary ANS-104 item (bytes or stream), verify and store it; return its info.

        Storing the same item again returns the stored one.
        """
        from permastore.protocol import ans104

        stream = as_stream(stream)
        header_bytes, rest = _read_item_header(stream)
        header = ans104.parse_header(header_bytes)
        existing = self.info(header.id)
        if existing is not None:
            return existing
        ingested = self._ingest(PrefixedStream(rest, stream), want_deep_hash=True, want_sha256=False, progress=progress)
        try:
            # Security: the signature covers the data's deep-hash; nothing is indexed unless it verifies.
            ans104.verify_header(header, ingested.blob_hash)
        except BaseException:
            ingested.discard()
            raise
        return self._commit(ingested, _item_row(header, header_bytes, ingested.size), header.tags)

    def put_tx(self, tx: Transaction, data=None, progress=None) -> ObjectInfo:
        """Given a signed L1 tx and its data (stream, bytes, or None for chunks to come), store it.

        The data must match the tx's data_size and data_root; nothing is stored otherwise.
        """
        # Security: the ID and signature are checked before any byte is written.
        verify_tx(tx)
        if tx.format == 1 or tx.data:
            data = tx.data
        existing = self.info(tx.id)
        if existing is not None and (existing.data_complete or data is None):
            return existing
        if existing is not None:
            return self._complete_tx(existing, tx, data, progress)
        row = _tx_row(tx)
        if tx.data_size == 0:
            return self._commit_tx(None, row, tx)
        if data is None:
            row["data_complete"] = 0
            return self._commit_tx(None, row, tx)
        ingested = self._ingest_tx_data(tx, data, progress)
        return self._commit_tx(ingested, row, tx)

    def _ingest_tx_data(self, tx: Transaction, data, progress) -> Ingested:
        ingested = self._ingest(data, want_deep_hash=False, want_sha256=True, progress=progress)
        if ingested.size != tx.data_size:
            ingested.discard()
            raise DataMismatch(f"tx {tx.id}: data is {ingested.size} bytes, data_size says {tx.data_size}")
        # Format 1 has no data_root: its data is covered by the signature itself.
        if tx.format == 2 and ingested.data_root != tx.data_root:
            ingested.discard()
            raise DataMismatch(f"tx {tx.id}: data does not match its data_root")
        return ingested

    def _commit_tx(self, ingested: Ingested | None, row: dict, tx: Transaction) -> ObjectInfo:
        def assign_weave_offset(conn, seq):
            if tx.data_size > 0 and tx.format == 2:
                # Weave offsets are 0-based; a tx's weave_offset is its last byte, as /tx/{id}/offset says.
                start = conn.execute("SELECT value FROM meta WHERE key = 'weave_size'").fetchone()[0]
                end = start + tx.data_size
                conn.execute("UPDATE meta SET value = ? WHERE key = 'weave_size'", (end,))
                conn.execute("UPDATE objects SET weave_offset = ? WHERE seq = ?", (end - 1, seq))
            if not row["data_complete"]:
                self._try_complete(conn, tx.data_root, tx.data_size)

        if ingested is None:
            ingested = Ingested()
        return self._commit(ingested, row, tx.tags, assign_weave_offset)

    def _complete_tx(self, existing: ObjectInfo, tx: Transaction, data, progress) -> ObjectInfo:
        """Given a pending tx now uploaded with its data, store the data and mark it complete."""
        ingested = self._ingest_tx_data(tx, data, progress)

        def complete(conn):
            seq = existing.seq
            if conn.execute("SELECT data_complete FROM objects WHERE seq = ?", (seq,)).fetchone()[0]:
                return seq  # completed meanwhile by chunks
            insert_chunk_list(conn, seq, ingested.chunk_list)
            conn.execute("UPDATE objects SET data_complete = 1 WHERE seq = ?", (seq,))
            return seq

        try:
            if ingested.segment is not None:
                self._commit_segment_with(ingested, complete)
            elif ingested.new_chunks:
                with PackLock(self.segments_dir):
                    self._append_to_pack(ingested.new_chunks, complete)
            else:
                with transaction(self.db) as conn:
                    complete(conn)
        except BaseException:
            ingested.discard()
            raise
        info = self.info(tx.id)
        self._maybe_unbundle(info)
        return self.info(tx.id)

    def put_chunk(self, data_root: bytes, data_size: int, offset: int, chunk: bytes, data_path: bytes) -> None:
        """Given a chunk of a pending L1 tx and its data_path, validate and store it.

        The proof must lead to data_root and the chunk must hash to the proven leaf.
        """
        # Security: proof validated and chunk hash matched before anything is stored.
        proven = merkle.validate_path(data_root, offset, 0, data_size, data_path)
        if len(chunk) != proven.chunk_size or hashlib.sha256(chunk).digest() != proven.data_hash:
            raise InvalidProof("chunk bytes do not match the data_path's leaf")
        expected = {(s, e) for s, e in merkle.chunk_ranges(data_size) if e > s}
        if (proven.left_bound, proven.right_bound) not in expected:
            raise InvalidProof("chunk bounds do not follow Arweave chunking of data_size")
        conn = self.db
        rows = conn.execute(
            "SELECT data_complete FROM objects WHERE kind = 'tx' AND data_root = ? AND data_size = ?",
            (data_root, data_size),
        ).fetchall()
        if not rows:
            raise NotFound(b64url.encode(data_root), "transaction with data_root")
        if all(row["data_complete"] for row in rows):
            return  # every tx with this data is already whole: nothing to add
        address = blake3.blake3(chunk).digest()
        kind, stored = codec.encode(chunk)
        new = NewChunk(address, len(chunk), kind, stored, stored_size=len(stored), sha256=proven.data_hash)

        def record(conn):
            conn.execute(
                "INSERT OR IGNORE INTO pending_chunks(data_root, data_size, offset, hash) VALUES (?, ?, ?, ?)",
                (data_root, data_size, proven.left_bound, address),
            )
            conn.execute("UPDATE chunks SET sha256 = ? WHERE hash = ? AND sha256 IS NULL", (proven.data_hash, address))
            return self._try_complete(conn, data_root, data_size)

        if self._known_chunk(address):
            with transaction(conn):
                completed = record(conn)
        else:
            with PackLock(self.segments_dir):
                completed = self._append_to_pack([new], record)
        for id in completed:
            self._maybe_unbundle(self.info(id))

    def _try_complete(self, conn, data_root: bytes, data_size: int) -> list[str]:
        """Inside a transaction: when every chunk of data_root is here, complete its pending txs."""
        ranges = [(s, e) for s, e in merkle.chunk_ranges(data_size) if e > s]
        chunk_list = self._chunk_list_from_complete(conn, data_root, data_size)
        if chunk_list is None:
            got = dict(
                conn.execute(
                    "SELECT offset, hash FROM pending_chunks WHERE data_root = ? AND data_size = ?",
                    (data_root, data_size),
                ).fetchall()
            )
            if any(start not in got for start, _ in ranges):
                return []
            chunk_list = [(s, e - s, bytes(got[s]), None) for s, e in ranges]
        pending = conn.execute(
            "SELECT seq, id FROM objects WHERE kind = 'tx' AND data_root = ? AND data_size = ? AND data_complete = 0",
            (data_root, data_size),
        ).fetchall()
        for row in pending:
            insert_chunk_list(conn, row["seq"], chunk_list)
            conn.execute("UPDATE objects SET data_complete = 1 WHERE seq = ?", (row["seq"],))
        conn.execute("DELETE FROM pending_chunks WHERE data_root = ? AND data_size = ?", (data_root, data_size))
        return [row["id"] for row in pending]

    def _chunk_list_from_complete(self, conn, data_root: bytes, data_size: int):
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

    # -- reading ---------------------------------------------------------------------

    def info(self, id: str) -> ObjectInfo | None:
        """Given an ID, return its ObjectInfo, or None when it is not stored."""
        row = object_row(self.db, id)
        if row is None:
            return None
        return to_info(row, tags_of(self.db, [row["seq"]])[row["seq"]])

    def _row(self, id: str) -> sqlite3.Row:
        row = object_row(self.db, id) if isinstance(id, str) else None
        if row is None:
            raise NotFound(id)
        return row

    def read(self, id: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given an ID and a byte range [start, end), yield its bytes, each chunk verified first.

        Raises NotFound (unknown ID or data not yet complete) and CorruptChunk.
        """
        row = self._row(id)
        start, end = _clamp(start, end, row["data_size"])
        return self._read_row(row, start, end)

    def _read_row(self, row, start: int, end: int) -> Iterator[bytes]:
        if not row["data_complete"]:
            raise NotFound(row["id"], "data of")
        if start >= end:
            return iter(())
        if row["data_parent"] is not None:
            # A bundled item's bytes are a range of its parent's data: no copy.
            parent = self._row(row["data_parent"])
            base = row["data_parent_offset"]
            return self._read_row(parent, base + start, base + end)
        rows = chunk_rows(self.db, row["seq"], start, end)
        return self._read_chunks(row["id"], rows, start, end)

    def _read_chunks(self, id: str, rows, start: int, end: int) -> Iterator[bytes]:
        for chunk in rows:
            raw = self._chunks.load(id, chunk)
            lo = max(start - chunk["offset"], 0)
            hi = min(end - chunk["offset"], chunk["size"])
            yield raw if (lo == 0 and hi == len(raw)) else raw[lo:hi]

    def read_range(self, id: str, start: int, length: int) -> bytes:
        """Given an ID, a start and a length, return those bytes (fewer at the end of the data)."""
        if start < 0 or length < 0:
            raise StoreError(f"invalid range start={start} length={length}")
        return b"".join(self.read(id, start, start + length))

    def raw_header(self, id: str) -> bytes:
        """Given an ID, return the binary ANS-104 header (item) or the tx JSON bytes (tx)."""
        return bytes(self._row(id)["raw_header"])

    def item_bytes(self, id: str) -> Iterator[bytes]:
        """Given a data item ID, yield the whole original item: header, then verified data."""
        row = self._row(id)
        if row["kind"] != "item":
            raise StoreError(f"{id} is an L1 transaction, not a data item")
        yield bytes(row["raw_header"])
        yield from self._read_row(row, 0, row["data_size"])

    def query(self, q: Query) -> Page:
        """Given a Query, return one Page of matching objects."""
        return run_query(self.db, q)

def _read_item_header(stream) -> tuple[bytes, bytes]:
    """Given a stream at an ANS-104 item, return (header bytes, the data bytes read past it)."""
    from permastore.protocol import ans104

    buf = b""
    while True:
        size = ans104.header_size_of(buf) if buf else None
        if size is not None:
            return buf[:size], buf[size:]
        if len(buf) > MAX_ITEM_HEADER:
            raise MalformedData(f"data item header is longer than {MAX_ITEM_HEADER} bytes")
        more = stream.read(HEADER_READ)
        if not more:
            raise MalformedData(f"data item ends inside its header ({len(buf)} bytes)")
        buf += more


def _check_tags(tags) -> None:
    """Refuse bad tags before any data is streamed (the signer would refuse them after)."""
    from permastore.protocol import avro_tags

    avro_tags.encode_tags(tags)


def _clamp(start: int, end: int | None, size: int) -> tuple[int, int]:
    if start < 0 or (end is not None and end < start):
        raise StoreError(f"invalid range start={start} end={end}")
    end = size if end is None else min(end, size)
    return min(start, size), end


def _b64(value) -> str:
    return b64url.encode(value) if value else ""


def _item_row(header, header_bytes: bytes, data_size: int) -> dict:
    return {
        "id": header.id,
        "kind": "item",
        "format": None,
        "signature_type": header.signature_type,
        "owner": header.owner,
        "owner_address": header.owner_address,
        "target": _b64(header.target),
        "anchor": _b64(header.anchor),
        "signature": header.signature,
        "data_size": data_size,
        "data_root": b"",
        "content_type": content_type_of(header.tags),
        "raw_header": bytes(header_bytes),
        "data_complete": 1,
    }


def _tx_row(tx: Transaction) -> dict:
    import json

    body = tx.to_json()
    if tx.format == 2:
        body["data"] = ""  # format-2 data is served by /{id} and /chunk, not inside the header
    return {
        "id": tx.id,
        "kind": "tx",
        "format": tx.format,
        "signature_type": 1,
        "owner": tx.owner,
        "owner_address": tx.owner_address,
        "target": _b64(tx.target),
        "anchor": _b64(tx.last_tx),
        "quantity": str(tx.quantity),
        "reward": str(tx.reward),
        "signature": tx.signature,
        "data_size": tx.data_size,
        "data_root": tx.data_root,
        "content_type": content_type_of(tx.tags),
        "raw_header": json.dumps(body, separators=(",", ":")).encode(),
        "data_complete": 1,
    }

