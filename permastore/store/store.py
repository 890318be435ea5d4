"""The storage engine's front door: `Store` (opening, committing, reading).

Puts live in mixins: `items` (put_data, put_item), `transactions` (put_tx, put_chunk);
so do `bundles`, `weave` (offsets, proofs, blocks), `object_paths`, `export`, `fsck`.

Every put follows the same durable order: chunk bytes written -> segment fsync ->
one SQLite transaction (WAL, synchronous=FULL) for the object row, tags and chunk
list -> return. Nothing is acknowledged before its commit, and nothing committed
points at bytes that were not fsynced first.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from permastore.protocol.signers import RsaSigner
from permastore.store import codec, schema
from permastore.store.bundles import Unbundler
from permastore.store.errors import NotFound, StoreError
from permastore.store.export import Exporter
from permastore.store.fsck import Checker
from permastore.store.index import (
    insert_chunk_list,
    insert_object,
    object_row,
    record_chunks,
    record_inline_chunks,
    tags_of,
    to_info,
    transaction,
)
from permastore.store.ingest import Ingested, NewChunk, ingest
from permastore.store.items import Items
from permastore.store.known_copies import KnownCopies
from permastore.store.object_paths import ObjectPaths, remove_stale_views
from permastore.store.partial import PartialObjects
from permastore.store.query import run_query
from permastore.store.reader import ChunkReader, chunk_rows, contiguous_runs
from permastore.store.records import ObjectInfo, Page, Query
from permastore.store.segments import (
    SEGMENTS_DIR,
    PackAppender,
    PackLock,
    SegmentReader,
    pack_name,
    remove_orphans,
)
from permastore.store.transactions import Transactions
from permastore.store.wallet_file import load_or_create_wallet
from permastore.store.weave import Weave

WALLET_FILE = "wallet.json"
OPEN_LOCK = ".open.lock"  # shared while a Store is open; exclusive for the first opener's cleanup
INDEX_FILE = "index.sqlite"
VIEWS_DIR = "views"
# A pack is sealed and a new one started once it would pass this size.
PACK_LIMIT = 1024 * 1024 * 1024


class Store(Items, Transactions, KnownCopies, ObjectPaths, Unbundler, Weave, Checker, Exporter, PartialObjects):
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
        self._chunks = ChunkReader(self._segments, self._segment_name, self._inline_bytes)
        self.bucket = None  # a Bucket when opened on one (permastore.store.bucket); None: the embedded default
        self._cache = None  # its SegmentCache
        self._learner = None  # its HeaderLearner
        self.pack_limit = PACK_LIMIT  # a pack is sealed past it (smaller with a bucket: sealed packs are evictable)
        self.wallet: dict = {}
        self._signer: RsaSigner | None = None
        self.last_bundle_refusals: list[tuple[str, str]] = []
        self._open_lock = -1

    # -- opening and closing ---------------------------------------------------------

    @classmethod
    def open(cls, data_dir, bucket=None) -> Store:
        """Given a data folder (created if missing), return the opened Store.

        bucket: BucketSettings, or None for those of the environment ($PERMASTORE_S3_BUCKET...;
        none set: the embedded default, chunk data only in the folder), or False for none.
        """
        store = cls(Path(data_dir))
        try:
            store._open()
            store._open_bucket(bucket)
        except (OSError, sqlite3.Error) as exc:
            store.close()
            raise StoreError(f"cannot open data folder {data_dir}: {exc}") from None
        except StoreError:
            store.close()
            raise
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

    def _open_bucket(self, settings) -> None:
        """With bucket settings, make the folder a cache of the bucket and learn what it holds."""
        if settings is None:
            from permastore.store.bucket.settings import BucketSettings

            settings = BucketSettings.from_env()
        if not settings:
            return
        from permastore.store.bucket.bucket import Bucket
        from permastore.store.bucket.cache import SegmentCache
        from permastore.store.bucket.learning import HeaderLearner

        self.bucket = Bucket(self, settings)
        self.bucket.open()
        self._cache = SegmentCache(self, settings.cache_size)
        self.pack_limit = min(self.pack_limit, self._cache.pack_limit)
        self._chunks.remote = self.bucket.load_chunk
        self._chunks.repair = self.bucket.repair_chunk  # from peers, once the node gives some
        self.bucket.check_identity()  # another or an emptied bucket: what is held here is published again
        self._learner = HeaderLearner(self, self.bucket)
        self._learner.learn()
        self._cache.trim()

    def learn_from_bucket(self) -> int:
        """With a bucket, index the objects other nodes published since the last look; return how many."""
        return self._learner.learn() if self._learner else 0

    def follow_bucket(self, interval: float = 2.0) -> None:
        """With a bucket, keep learning new headers every interval seconds (a thread) until close()."""
        if self._learner:
            self._learner.follow(interval)

    def trim_cache(self) -> int:
        """With a bucket, evict least recently used segments past --cache-size; return bytes freed."""
        return self._cache.trim() if self._cache else 0

    def _publish(self, info):
        """With a bucket, put the object's chunks and header there before it is acknowledged."""
        if self.bucket is not None and info is not None:
            self.bucket.publish(info.id)
            self._cache.trim()
        return info

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
        if self._learner is not None:
            self._learner.stop()
        if self.bucket is not None:
            self.bucket.close()
        if self._cache is not None:
            self._cache.close()
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

    def _inline_bytes(self, inline_id: int) -> bytes | None:
        row = self.db.execute("SELECT stored FROM inline_chunks WHERE id = ?", (inline_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def _segment_file(self, segment_id: int):
        """Context manager: a read descriptor of a segment, open while the block runs."""
        return self._segments.opened(self._segment_name(segment_id))

    def _known_chunk(self, address: bytes) -> bool:
        """Given a BLAKE3 address, return True when a committed chunk has it (any thread)."""
        with self._lookup_lock:
            return self._lookup.execute("SELECT 1 FROM chunks WHERE hash = ?", (address,)).fetchone() is not None

    # -- writing ---------------------------------------------------------------------

    def _ingest(self, data, want_deep_hash: bool, want_sha256: bool, progress=None) -> Ingested:
        early = self.bucket.early_uploads() if self.bucket is not None else None  # None when importing
        return ingest(data, self.segments_dir, self._known_chunk, want_deep_hash, want_sha256, progress,
                      on_new_chunk=early.add if early is not None else None)  # fmt: skip

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
            return self._publish(existing)
        except BaseException:
            ingested.discard()  # nothing committed refers to what this put wrote
            raise
        info = self.info(row["id"])
        self._maybe_unbundle(info)  # indexes the items inside; the parent's info stays as it is
        return self._publish(info)

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
            if ingested.segment_is_object:
                conn.execute(
                    "INSERT INTO segment_objects(segment_id, seq) VALUES (?, ?)", (cursor.lastrowid, result)
                )
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
        return self._store_new_chunks(new_chunks, lambda c: self._insert_all(c, ingested, row, tags, after_insert))

    def _store_new_chunks(self, new_chunks: list[NewChunk], inside: Callable) -> int:
        """Store a small put's new chunks and commit them with ``inside``.

        Tiny chunks go into the index in the same transaction: with no pack bytes the
        put costs one fsync (SQLite's WAL at COMMIT), and nothing is visible before it.
        """
        inline = [c for c in new_chunks if c.stored_size <= codec.INLINE_LIMIT]
        packed = [c for c in new_chunks if c.stored_size > codec.INLINE_LIMIT]

        def with_inline(conn):
            record_inline_chunks(conn, inline)
            return inside(conn)

        if not packed:
            with transaction(self.db) as conn:
                return with_inline(conn)
        with PackLock(self.segments_dir):
            return self._append_to_pack(packed, with_inline)

    def _append_to_pack(self, new_chunks: list[NewChunk], inside: Callable) -> int:
        """Under the pack lock: append chunks to the open pack, fsync, then commit with ``inside``."""
        conn = self.db
        incoming = sum(c.stored_size for c in new_chunks)
        pack = conn.execute(
            "SELECT id, name, committed_size FROM segments WHERE kind = 'pack' AND sealed = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        seal_id = None
        if pack is not None and pack["committed_size"] and pack["committed_size"] + incoming > self.pack_limit:
            seal_id, pack = pack["id"], None
        if pack is None:
            # Numbered after the highest (a bucket's cache evicts sealed packs; the open one, the highest, stays).
            count = conn.execute(
                "SELECT COALESCE(MAX(CAST(substr(name, 6, length(name) - 9) AS INTEGER)), 0) FROM segments WHERE kind = 'pack'"
            ).fetchone()[0]
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
        if self._cache is not None:
            self._cache.touch({r["segment_id"] for r in rows})
        return self._read_chunks(row["id"], rows, start, end)

    def _read_chunks(self, id: str, rows, start: int, end: int) -> Iterator[bytes]:
        runs = contiguous_runs(rows)
        if self.bucket is not None:
            runs = self.bucket.fetch_ahead(runs)  # (run, fetched): chunks only in the bucket read ahead
        for run in runs:
            if self.bucket is not None:
                run, fetched = run
                if fetched is not None:
                    yield _within(self._chunks.load(id, run[0], fetched), run[0]["offset"], start, end)
                    continue
            data = self._chunks.load_run(id, run)
            if data is None:
                # Some chunk failed: go chunk by chunk so every verified one before it is still
                # served and the error names the chunk.
                for chunk in run:
                    yield _within(self._chunks.load(id, chunk), chunk["offset"], start, end)
                continue
            yield _within(data, run[0]["offset"], start, end)

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

def _within(data: bytes, offset: int, start: int, end: int) -> bytes:
    """Given bytes that begin at offset in the object, return the part inside [start, end)."""
    lo, hi = max(start - offset, 0), min(end - offset, len(data))
    return data if (lo == 0 and hi == len(data)) else data[lo:hi]


def _clamp(start: int, end: int | None, size: int) -> tuple[int, int]:
    if start < 0 or (end is not None and end < start):
        raise StoreError(f"invalid range start={start} end={end}")
    end = size if end is None else min(end, size)
    return min(start, size), end
