"""Learning headers other nodes published into the bucket, and indexing them here.

Header keys sort by publication time (layout.py), so one LIST with StartAfter gives what is
new since the last look. Clocks of nodes differ and a slow publisher may write a key older
than the newest already seen: each look starts LOOKBACK_US before the newest time seen, and
IDs already indexed are skipped (one cheap SQLite lookup each).

Nothing in the bucket is trusted. A format-2 L1 tx with data is indexed from its manifest
alone (the data stays in the bucket): its signature is verified, its chunk list must cover
data_size in Arweave's chunking and the chunks' SHA-256s must rebuild its signed data_root;
each chunk's bytes are checked against BLAKE3 and SHA-256 when read. Anything else (data
items, format-1 txs, empty data) goes through the store's own put path with its data read
from the bucket, so exactly the checks of a local put apply (an item's signature covers its
data's deep-hash: its data must be read to verify it).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading

import blake3

from permastore.protocol import merkle
from permastore.protocol.errors import MalformedData, ProtocolError
from permastore.protocol.tx import Transaction
from permastore.protocol.tx import verify as verify_tx
from permastore.store import codec
from permastore.store.bucket import layout
from permastore.store.bucket.manifest import Manifest, decode, span_rows
from permastore.store.bucket.storage import BucketError
from permastore.store.errors import StoreError
from permastore.store.index import insert_chunk_list, insert_object, transaction
from permastore.store.reader import BUCKET_SEGMENT
from permastore.store.transactions import tx_row
from permastore.store.weave import assign_weave_range

log = logging.getLogger("permastore.bucket")

LOOKBACK_US = 120 * 1_000_000
MARKER = "headers_marker"
FOLLOW_INTERVAL = 2.0


class HeaderLearner:
    """Given a Store and its Bucket, index the objects the bucket holds that the store lacks."""

    def __init__(self, store, bucket):
        self.store = store
        self.bucket = bucket
        self.refused: dict[str, str] = {}  # header key -> why (not retried by this process)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def learn(self) -> int:
        """Index every header published since the last look; return how many objects were added."""
        with self._lock:
            return self._learn()

    def _learn(self) -> int:
        conn = self.store.db
        row = conn.execute("SELECT value FROM bucket_state WHERE key = ?", (MARKER,)).fetchone()
        newest = seen = int(row[0]) if row else 0
        start = layout.header_marker(self.bucket.prefix, newest - LOOKBACK_US) if row else ""
        added = 0
        for key in self.bucket.storage.list_after(self.bucket.prefix + layout.HEADERS, start):
            parsed = layout.parse_header_key(self.bucket.prefix, key)
            if parsed is None or key in self.refused:
                continue
            micros, id = parsed
            newest = max(newest, micros)
            if self.store.info(id) is not None:
                continue
            try:
                added += self._import(key, id)
            except (ProtocolError, StoreError, OSError) as exc:
                self.refused[key] = str(exc)
                log.warning("bucket: header %s refused: %s", key, exc)
        if newest != seen or row is None:  # no write (and no fsync) for a poll that found nothing new
            with transaction(conn):
                conn.execute("INSERT OR REPLACE INTO bucket_state(key, value) VALUES (?, ?)", (MARKER, str(newest)))
        return added

    def _import(self, key: str, id: str) -> int:
        data = self.bucket.storage.get(key)
        if data is None:
            return 0
        manifest = decode(data)
        if manifest.id != id:
            raise MalformedData(f"header object {key} is of {manifest.id}")
        if manifest.kind == "tx":
            tx = Transaction.from_json(json.loads(manifest.raw_header))
            if tx.id != id:
                raise MalformedData(f"header object {key} holds tx {tx.id}")
            if tx.format == 2 and tx.data_size > 0:
                self._index_tx(tx, manifest)
                return 1
            with self.bucket.importing():
                self.store.put_tx(tx, ChunkStream(self.bucket, manifest) if tx.data_size else None)
            self.bucket.record_locations(manifest)  # its chunks verified by the put: where the bucket has them
            return 1
        with self.bucket.importing():
            info = self.store.put_item(ChunkStream(self.bucket, manifest, prefix=manifest.raw_header))
        if info.id != id:
            raise MalformedData(f"header object {key} holds item {info.id}")
        self.bucket.record_locations(manifest)
        return 1

    def _index_tx(self, tx: Transaction, manifest: Manifest) -> None:
        """Index a format-2 tx whose data stays in the bucket, once its manifest is proven."""
        # Security: signature first, then the chunk list must rebuild the signed data_root.
        verify_tx(tx)
        if manifest.data_size != tx.data_size or any(sha is None for *_, sha in manifest.chunks):
            raise MalformedData(f"header object of {tx.id}: data_size or chunk SHA-256s do not match the tx")
        shas = {offset: sha for offset, _, _, sha in manifest.chunks}
        empty = hashlib.sha256(b"").digest()
        leaves = [merkle.Chunk(shas.get(s, empty), s, e) for s, e in merkle.chunk_ranges(tx.data_size)]
        if merkle.compute_root(leaves) != tx.data_root:
            raise MalformedData(f"header object of {tx.id}: chunk list does not rebuild its data_root")
        conn = self.store.db
        with transaction(conn):
            if conn.execute("SELECT 1 FROM objects WHERE id = ?", (tx.id,)).fetchone():
                return
            conn.executemany(
                "INSERT OR IGNORE INTO chunks(hash, segment_id, offset, stored_size, size, codec, sha256)"
                " VALUES (?, ?, 0, ?, ?, ?, ?)",
                [(b3, BUCKET_SEGMENT, size, size, codec.RAW, sha) for _, size, b3, sha in manifest.chunks],
            )
            seq = insert_object(conn, tx_row(tx), tx.tags)
            insert_chunk_list(conn, seq, manifest.chunks)
            assign_weave_range(conn, seq, tx.format, tx.data_size)
            conn.executemany("INSERT OR IGNORE INTO bucket_chunks(hash) VALUES (?)", [(c[2],) for c in manifest.chunks])
            conn.execute("INSERT OR IGNORE INTO bucket_published(id) VALUES (?)", (tx.id,))
            conn.executemany("INSERT OR IGNORE INTO bucket_spans(hash, span, offset) VALUES (?, ?, ?)", span_rows(manifest))
        self.store._maybe_unbundle(self.store.info(tx.id))

    # -- following ---------------------------------------------------------------------

    def follow(self, interval: float = FOLLOW_INTERVAL) -> None:
        """Start a thread that learns new headers every interval seconds until stop()."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, args=(interval,), name="bucket-follow", daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                added = self.learn()
                if added:
                    log.info("bucket: %d new objects indexed", added)
                    self.store.trim_cache()
            except (BucketError, StoreError, OSError) as exc:
                log.warning("bucket: learning headers failed: %s", exc)
            except Exception:  # the poll must outlive any one bad round
                log.exception("bucket: learning headers failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


class ChunkStream(io.RawIOBase):
    """A manifest's data read chunk by chunk from the bucket, each chunk checked against BLAKE3 first."""

    def __init__(self, bucket, manifest: Manifest, prefix: bytes = b""):
        self.bucket = bucket
        self.chunks = iter(zip(manifest.chunks, manifest.locations or [None] * len(manifest.chunks)))
        self.buffer = memoryview(bytes(prefix))

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while not len(self.buffer):
            entry = next(self.chunks, None)
            if entry is None:
                return b""
            (offset, size, address, _), where = entry
            raw = self.bucket.read_manifest_chunk(address, size, where)
            # Security: a bucket object is used only when it hashes to the address its manifest names.
            if raw is None or len(raw) != size or blake3.blake3(raw).digest() != address:
                raise OSError(f"bucket chunk {address.hex()} (at {offset}) is missing or corrupt")
            self.buffer = memoryview(raw)
        n = len(self.buffer) if n is None or n < 0 else n
        out, self.buffer = bytes(self.buffer[:n]), self.buffer[n:]
        return out
