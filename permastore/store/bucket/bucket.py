"""What a Store does with its bucket: publish before acknowledging, load chunks, check them.

A put is acknowledged only once (1) its chunks are committed locally (the store's own
durable order), (2) every chunk is in the bucket (new chunks 16 at a time in a span,
`spans/<name>`, transfer.py; chunks of the first layout under `chunks/<BLAKE3>`), (3) its
manifest is in the bucket under headers/. Writes are conditional (If-None-Match: *): a key
that exists already should hold the same bytes (content addressing; a span found there is
checked by size and MD5 ETag and overwritten when wrong), or, for a header, another node's
publication, which the learner reads as the same ID. Local tables (in index.sqlite)
only save work: `bucket_chunks` (chunks known to be in the bucket: not uploaded again, and
what may be evicted from the cache), `bucket_spans` (which span a chunk is read from, and
where), `bucket_span_members` (every span's chunks by offset: a chunk may be in two spans),
`bucket_published` (IDs whose header is there), `bucket_pending` (tx headers published
before their data). Bad objects are repaired by repair.py (a span as a whole).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from permastore.store.bucket import layout, read_back
from permastore.store.bucket.identity import SAVED_SCHEMA, check_identity
from permastore.store.bucket.manifest import Manifest, span_rows
from permastore.store.bucket.repair import BucketRepairer
from permastore.store.bucket.settings import BucketSettings
from permastore.store.bucket.storage import BucketError, ObjectStorage, S3Storage
from permastore.store.bucket.transfer import (
    READ_AHEAD,
    SPAN_CHUNKS,
    SPANS_IN_FLIGHT,
    EarlyUploads,
    FetchAhead,
    SpanBuilder,
)
from permastore.store.errors import StoreError
from permastore.store.index import object_row, transaction
from permastore.store.reader import chunk_rows

log = logging.getLogger("permastore.bucket")

SCHEMA = """
CREATE TABLE IF NOT EXISTS bucket_chunks (hash BLOB PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bucket_spans (hash BLOB PRIMARY KEY, span BLOB NOT NULL, offset INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bucket_span_members (span BLOB NOT NULL, offset INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (span, offset)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bucket_published (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bucket_pending (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bucket_state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_segment ON chunks(segment_id);
"""
UPLOAD_THREADS = SPANS_IN_FLIGHT  # span PUTs at once
READ_THREADS = READ_AHEAD // SPAN_CHUNKS + 8  # GETs at once for read-ahead (spans, and chunks of the first layout)


def record_spans(conn, located) -> None:
    """Inside a transaction: note (address, span, offset) of chunks in spans. A chunk uploaded in
    two spans (two puts or nodes at once) keeps its first as where it is read (`bucket_spans`),
    and is a member of both (`bucket_span_members`), so each span can be rebuilt whole."""
    conn.executemany("INSERT OR IGNORE INTO bucket_spans(hash, span, offset) VALUES (?, ?, ?)", located)
    conn.executemany("INSERT OR IGNORE INTO bucket_span_members(span, offset, hash) VALUES (?, ?, ?)",
                     [(span, offset, address) for address, span, offset in located])  # fmt: skip


class Bucket:
    """A Store's bucket: given the store and settings, publish, load and check chunk data."""

    def __init__(self, store, settings: BucketSettings, storage: ObjectStorage | None = None):
        self.store = store
        self.settings = settings
        self.prefix = settings.prefix
        self.storage = storage or S3Storage(settings.endpoint, settings.bucket)
        self._importing = threading.local()
        self._pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="bucket-upload")
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="bucket-read")
        self.repairer: BucketRepairer | None = None  # set by repair_from (peers given)
        self.repaired: list[tuple[str, int, str]] = []  # (ID, chunk index, how) repaired by check()

    def open(self) -> None:
        """Create the bucket when missing and the local tables; called once by Store.open."""
        if hasattr(self.storage, "ensure_bucket"):
            self.storage.ensure_bucket()
        conn = self.store.db
        had_members = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'bucket_span_members'").fetchone()
        conn.executescript(SCHEMA + SAVED_SCHEMA)
        if not had_members:  # a folder from before the table: its spans' members as far as known
            with transaction(conn):
                conn.execute("INSERT OR IGNORE INTO bucket_span_members(span, offset, hash)"
                             " SELECT span, offset, hash FROM bucket_spans")  # fmt: skip

    def check_identity(self) -> None:
        """Once opened (reads of chunks working): when this is not the bucket the folder's tables
        describe, publish what the folder holds again (identity.py)."""
        check_identity(self)

    def repair_from(self, peers) -> None:
        """Given a callable returning peers (RangeSource, e.g. the fetch engine's PeerClients),
        repair bad or missing bucket chunks from them, on reads and in check()."""
        self.repairer = BucketRepairer(self.store, self, peers)

    def repair_chunk(self, id: str, row) -> bytes | None:
        """Given an object and the row of a chunk that failed to read, return its verified bytes
        from a peer (the bucket object rewritten), or None (no peers, or none had it)."""
        return self.repairer.chunk(id, row) if self.repairer is not None else None

    def rebuild_spans(self, spans, id: str) -> None:
        """Given spans that held a chunk repaired from a peer while an object was learned (now
        indexed here, its chunks with it), rebuild each from verified chunks (repair.py)."""
        repairer = self.repairer
        if repairer is None:
            return
        for span in spans:
            repairer.rebuild_span(span, {}, id)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._reads.shutdown(wait=True)

    # -- publishing --------------------------------------------------------------------

    def importing(self, manifest: Manifest | None = None):
        """Context manager: puts made inside it come from the bucket (nothing is uploaded again);
        the object of manifest has its chunks noted as in the bucket with their spans, in one commit."""
        bucket = self

        class _Importing:
            def __enter__(self):
                bucket._importing.on, bucket._importing.manifest = True, manifest

            def __exit__(self, *exc):
                bucket._importing.on, bucket._importing.manifest = False, None

        return _Importing()

    def _imported_rows(self, rows) -> list[tuple[bytes, bytes | None, int | None]]:
        """Importing: (address, span, offset) of an object's chunks, where the manifest places them.
        Written with bucket_chunks in one commit: a chunk noted as in the bucket always has its
        place too (a crash between two commits would leave it with none, chunks/<address>)."""
        manifest = getattr(self._importing, "manifest", None)  # its chunks' bytes were read there and verified
        spans = {a: (a, span, at) for a, span, at in span_rows(manifest)} if manifest is not None else {}
        return [spans.get(bytes(r["hash"]), (bytes(r["hash"]), None, None)) for r in rows]

    def early_uploads(self) -> EarlyUploads | None:
        """Start a put's uploads while it streams in (this thread's next publish waits for them)."""
        if getattr(self._importing, "on", False):
            return None
        self._importing.early = EarlyUploads(self)
        return self._importing.early

    def discard_early(self, early: EarlyUploads) -> None:
        """Given the uploads of a put that failed or was abandoned (on this thread), forget them:
        the thread's next publish must not wait on them, nor record their chunks."""
        if getattr(self._importing, "early", None) is early:
            self._importing.early = None
        early.discard()

    def _own_early(self, early: EarlyUploads | None, rows) -> EarlyUploads | None:
        """The thread's early uploads when they are this object's (every chunk one of its own), else
        None: uploads left by a put that ended without publishing are discarded, never waited on."""
        if early is None or early.addresses <= {bytes(r["hash"]) for r in rows}:
            return early
        early.discard()
        return None

    def publish(self, id: str) -> None:
        """Given a committed object's ID, make sure its chunks and its header are in the bucket.

        Raises BucketError when the bucket refuses: the put is then not acknowledged (a retry
        publishes what is missing; everything already there is skipped).
        """
        conn = self.store.db
        early = getattr(self._importing, "early", None)  # this thread's put's uploads, if any
        self._importing.early = None
        row = object_row(conn, id)
        if row is None or row["data_parent"] is not None:
            return  # bundled items travel inside their bundle
        if conn.execute("SELECT 1 FROM bucket_published WHERE id = ?", (id,)).fetchone():
            return
        if not row["data_complete"]:
            self._publish_pending(row)
            return
        rows = chunk_rows(conn, row["seq"], 0, row["data_size"]) if row["data_size"] else []
        if getattr(self._importing, "on", False):
            self._record(conn, self._imported_rows(rows), id)
            return
        early = self._own_early(early, rows)
        if early is not None:
            self._record(conn, early.wait(), None)  # raises BucketError: not acknowledged
        self._upload_chunks(id, rows)
        chunks, locations = self._chunk_list(row)
        manifest = Manifest(id, row["kind"], bytes(row["raw_header"]), row["data_size"], chunks, locations=locations)
        key = layout.header_key(self.prefix, time.time_ns() // 1000, id)
        self.storage.put_if_absent(key, manifest.encode())
        self._record(conn, [], id)

    def _publish_pending(self, row) -> None:
        """Given a tx header whose data is not here yet, publish it as pending (once): other nodes
        index and serve the header; its data follows in a second manifest when it completes."""
        conn = self.store.db
        if conn.execute("SELECT 1 FROM bucket_pending WHERE id = ?", (row["id"],)).fetchone():
            return
        if not getattr(self._importing, "on", False):
            manifest = Manifest(row["id"], row["kind"], bytes(row["raw_header"]), row["data_size"], [], pending=True)
            key = layout.header_key(self.prefix, time.time_ns() // 1000, row["id"])
            self.storage.put_if_absent(key, manifest.encode())
        with transaction(conn):
            conn.execute("INSERT OR IGNORE INTO bucket_pending(id) VALUES (?)", (row["id"],))

    def _chunk_list(self, row) -> tuple[list, list]:
        """Given an object's row, return its manifest's chunk list and where each chunk is in the bucket."""
        sql = (
            "SELECT c.offset, c.size, c.hash, k.sha256, s.span, s.offset AS at FROM object_chunks c"
            " LEFT JOIN chunks k ON k.hash = c.hash LEFT JOIN bucket_spans s ON s.hash = c.hash"
            " WHERE c.seq = ? ORDER BY c.idx"
        )
        rows = self.store.db.execute(sql, (row["seq"],)).fetchall()
        chunks = [(r["offset"], r["size"], bytes(r["hash"]), bytes(r["sha256"]) if r["sha256"] else None) for r in rows]
        return chunks, [None if r["span"] is None else (bytes(r["span"]), r["at"]) for r in rows]

    def _upload_chunks(self, id: str, rows) -> None:
        conn = self.store.db
        unique = {bytes(r["hash"]): r for r in rows}
        todo = [r for a, r in unique.items() if not conn.execute("SELECT 1 FROM bucket_chunks WHERE hash = ?", (a,)).fetchone()]

        def upload(batch) -> list:
            span = SpanBuilder()
            for r in batch:
                span.add(bytes(r["hash"]), self.store.chunks.load(id, r))  # verified: the bucket gets only good bytes
            return self.put_span(span)

        batches = [todo[i : i + SPAN_CHUNKS] for i in range(0, len(todo), SPAN_CHUNKS)]
        self._record(conn, [where for done in self._pool.map(upload, batches) for where in done], None)

    def put_span(self, span: SpanBuilder) -> list[tuple[bytes, bytes, int]]:
        """Write a span's chunks as one object (unless there); return (address, span, offset) of each."""
        located = span.locations()
        key = layout.span_key(self.prefix, located[0][1])
        if not self.storage.put_if_absent(key, span.data):
            self._check_existing(key, span.data)
        return located

    def _check_existing(self, key: str, data) -> None:
        """Given a span just built here (verified chunks) whose key the bucket had already, make
        sure the object there is these bytes before they are acknowledged: another size, or an
        ETag that is an MD5 other than theirs (a torn or foreign write), and it is overwritten.
        Same-size damage behind an ETag that is no plain MD5 (multipart, SSE-KMS) is not seen
        here: fsck reads every span back and `fsck --repair` rebuilds it."""
        found = self.storage.head(key)
        if found is not None:
            size, etag = found
            md5 = (etag or "").strip('"').lower()
            if size == len(data) and not (len(md5) == 32 and md5 != hashlib.md5(data).hexdigest()):
                return
        log.warning("bucket: %s was there but %s; written again from verified chunks", key,
                    "gone" if found is None else f"{found[0]} bytes (ETag {found[1]}), not these {len(data)}")  # fmt: skip
        self.storage.put(key, bytes(data))

    def _record(self, conn, located, id: str | None) -> None:
        """Note chunks as in the bucket: (address, span, offset), or (address, None, None) for chunks/<address>."""
        with transaction(conn):
            conn.executemany("INSERT OR IGNORE INTO bucket_chunks(hash) VALUES (?)", [(a,) for a, _, _ in located])
            record_spans(conn, [where for where in located if where[1] is not None])
            if id is not None:
                conn.execute("INSERT OR IGNORE INTO bucket_published(id) VALUES (?)", (id,))
                conn.execute("DELETE FROM bucket_pending WHERE id = ?", (id,))

    def read_manifest_chunk(self, address: bytes, size: int, where: tuple[bytes, int] | None) -> bytes | None:
        """A chunk of a manifest being learned, from where it says (unverified: the caller checks the
        size and BLAKE3); None when missing. BucketError (the bucket unreachable) goes to the caller,
        which keeps the header to try again: an outage is not a bad chunk to repair."""
        if where is not None:
            data = self.storage.get_range(layout.span_key(self.prefix, where[0]), where[1], where[1] + size)
            return None if data is None else bytes(data)
        return self._chunk_object(address, size)

    # -- reading -----------------------------------------------------------------------

    def location(self, address: bytes) -> tuple[bytes, int] | None:
        """Given a chunk's address, return (span, offset) where the bucket holds it, or None: chunks/<address>."""
        row = self.store.index.lookup_one("SELECT span, offset FROM bucket_spans WHERE hash = ?", (address,))
        return None if row is None else (bytes(row[0]), row[1])

    def read_span(self, span: bytes, start: int, end: int) -> memoryview:
        """Bytes [start, end) of a span object; OSError when missing, short or unreadable."""
        key = layout.span_key(self.prefix, span)
        try:
            data = self.storage.get_range(key, start, end)
        except BucketError as exc:
            raise OSError(str(exc)) from None
        if data is None:
            raise OSError(f"span {span.hex()} is missing from bucket {self.settings.bucket}")
        if len(data) != end - start:
            raise OSError(f"span {span.hex()} is shorter than its manifest says")
        return data

    def check_sha256(self, address: bytes, data) -> bytes:
        """Given a chunk's bytes from the bucket, return them as bytes if they match the SHA-256 the index
        holds for it (the signed data_root's leaf); OSError when not. The caller checks BLAKE3 and the size."""
        sha256 = self.store.index.chunk_sha256(address)
        if sha256 is not None and hashlib.sha256(data).digest() != sha256:
            raise OSError(f"bucket object of chunk {address.hex()} does not match its SHA-256")
        return bytes(data)

    def load_chunk(self, address: bytes, size: int) -> bytes:
        """Given a chunk's BLAKE3 address and size, return its raw bytes from the bucket.

        From its span when one is known, else from chunks/<address>; checked against the
        index's SHA-256 (check_sha256). OSError when missing or wrong.
        """
        where = self.location(address)
        if where is not None:
            return self.check_sha256(address, self.read_span(where[0], where[1], where[1] + size))
        try:
            data = self._chunk_object(address, size)
        except BucketError as exc:
            raise OSError(str(exc)) from None
        if data is None:
            raise OSError(f"chunk {address.hex()} is missing from bucket {self.settings.bucket}")
        return self.check_sha256(address, data)

    def _chunk_object(self, address: bytes, size: int) -> bytes | None:
        """chunks/<address> (the first layout), at most size + 1 bytes of it (one more says it is
        too long: the caller's size check refuses it); None when missing."""
        data = self.storage.get_range(layout.chunk_key(self.prefix, address), 0, size + 1)
        return None if data is None else bytes(data)

    def fetch_ahead(self, runs) -> Iterator[tuple[list, object]]:
        """Given runs of chunk rows in read order, yield (run, fetched): fetched is None, or for
        a chunk held only in the bucket a callable returning its raw bytes, requested up to
        READ_AHEAD chunks ahead, a span's consecutive chunks with one ranged GET (transfer.py)."""
        return iter(FetchAhead(self, runs))

    def check(self, report, progress=None) -> None:
        """fsck: read every chunk the bucket should hold back from it, and verify it.

        With peers (repair_from), a bad or missing chunk is repaired from them: it is then
        listed in self.repaired, not in the report's failures.
        """
        rows = self.store.db.execute(read_back.CHECK_ROWS_SQL).fetchall()
        for r, problem in read_back.read_back(self, rows, self._reads):  # a span's chunks with one GET
            report.chunks_checked += 1
            if problem is not None:
                place = "" if r["span"] is None else f" span {bytes(r['span']).hex()} at {r['offset']}"
                self._report_bad(report, bytes(r["hash"]), r["size"], f"bucket{place}: {problem}")
            if progress:
                progress(r["size"])
        self._check_published(report)

    def _report_bad(self, report, address: bytes, size: int, reason: str) -> None:
        owners = self.store.db.execute(
            "SELECT o.id, c.idx FROM object_chunks c JOIN objects o ON o.seq = c.seq WHERE c.hash = ?", (address,)
        ).fetchall()
        fixed = self.repairer is not None and self.repairer.address(address, size) is not None
        for owner in owners:
            if fixed:
                self.repaired.append((owner["id"], owner["idx"], f"{reason}; rewritten from a verified copy"))
            else:
                report.failures.append((owner["id"], owner["idx"], reason))

    def _check_published(self, report) -> None:
        """Report complete L1 objects held here whose header is not in the bucket (never acknowledged there)."""
        missing = self.store.db.execute(
            "SELECT id FROM objects o WHERE data_complete = 1 AND data_parent IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM bucket_published p WHERE p.id = o.id)"
        ).fetchall()
        for row in missing:
            if self.repairer is not None and self._publish_now(row["id"]):
                self.repaired.append((row["id"], -1, "was not in the bucket; published, missing chunks from a peer"))
            else:
                report.failures.append((row["id"], -1, "not in the bucket: its header was never published there"))

    def _publish_now(self, id: str) -> bool:
        """Given an ID held here, publish it (chunks not held here come from the repairer's peers); True when done."""
        try:
            self.publish(id)
        except (StoreError, OSError) as exc:
            log.warning("bucket: %s cannot be published: %s", id, exc)
            return False
        return self.store.db.execute("SELECT 1 FROM bucket_published WHERE id = ?", (id,)).fetchone() is not None

