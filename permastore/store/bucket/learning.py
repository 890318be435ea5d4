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
import time

import blake3

from permastore.protocol import merkle
from permastore.protocol.errors import MalformedData, ProtocolError
from permastore.protocol.tx import Transaction
from permastore.protocol.tx import verify as verify_tx
from permastore.store import codec
from permastore.store.bucket import layout
from permastore.store.bucket.bucket import record_spans
from permastore.store.bucket.manifest import MAX_MANIFEST, Manifest, decode, span_rows
from permastore.store.bucket.storage import BucketError
from permastore.store.errors import StoreError
from permastore.store.index import insert_chunk_list, insert_object, transaction
from permastore.store.object_rows import tx_row
from permastore.store.reader import BUCKET_SEGMENT
from permastore.store.weave import assign_weave_range

log = logging.getLogger("permastore.bucket")

LOOKBACK_US = 120 * 1_000_000
MARKER = "headers_marker"
FOLLOW_INTERVAL = 2.0
# Headers that could not be read whole (a bad or missing chunk, the bucket unreachable) are
# kept in bucket_state under this prefix and tried again: at open, every RETRY_EVERY_S, and as
# soon as peers to repair from are given. Past the LIST marker, they would never be seen again.
RETRY_PREFIX = "retry:"
RETRY_EVERY_S = 60.0
MAX_RETRIED = 1000  # kept at most (the oldest beyond are dropped with a warning)
# Header keys remembered in memory (refused ones, pending ones applied) are only those a look
# can list again: within LOOKBACK_US of the newest time seen; and at most this many, the
# newest (a key forgotten inside the window costs one GET when listed again, nothing more).
MAX_REMEMBERED_KEYS = 10_000


class RecentKeys(dict):
    """Header keys (key -> why, or '') kept only while a look can list them again: past the
    look-back window (forget_before) or past MAX_REMEMBERED_KEYS, the oldest go (keys sort by time)."""

    def remember(self, key: str, why: str = "") -> None:
        self[key] = why
        if len(self) > MAX_REMEMBERED_KEYS:
            keep = sorted(self)[-max(1, MAX_REMEMBERED_KEYS * 3 // 4) :]  # room again for a quarter: amortised
            for old in set(self) - set(keep):
                del self[old]

    def forget_before(self, marker: str) -> None:
        """Drop the keys that sort before marker (a look never lists them again)."""
        for old in [key for key in self if key < marker]:
            del self[old]


class UnreadableChunk(OSError):
    """A manifest's chunk is missing from the bucket or does not hash to its address."""


class HeaderLearner:
    """Given a Store and its Bucket, index the objects the bucket holds that the store lacks."""

    def __init__(self, store, bucket):
        self.store = store
        self.bucket = bucket
        self.refused = RecentKeys()  # header key -> why (not retried by this process)
        self.applied = RecentKeys()  # keys of pending headers already indexed (not read again)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._retried_at = float("-inf")
        self._retried_with_peers = False

    def learn(self) -> int:
        """Index every header published since the last look; return how many objects were added."""
        with self._lock:
            return self._retry() + self._learn()

    def _retry(self) -> int:
        """Try the headers kept for retrying again, when it is time (see RETRY_PREFIX)."""
        peers_now = self.bucket.repairer is not None and not self._retried_with_peers
        if not peers_now and time.monotonic() - self._retried_at < RETRY_EVERY_S:
            return 0
        self._retried_at, self._retried_with_peers = time.monotonic(), self.bucket.repairer is not None
        conn = self.store.db
        keys = [r[0][len(RETRY_PREFIX) :] for r in conn.execute(
            "SELECT key FROM bucket_state WHERE key >= ? AND key < ? ORDER BY key", (RETRY_PREFIX, RETRY_PREFIX + "\uffff")
        ).fetchall()]  # fmt: skip
        added = 0
        for key in keys:
            parsed = layout.parse_header_key(self.bucket.prefix, key)
            known = self.store.info(parsed[1]) if parsed else None
            if parsed is not None and (known is None or not known.data_complete):
                added += self._try(key, parsed[1], retrying=True)
            else:
                self._forget_retry(key)
        return added

    def _try(self, key: str, id: str, retrying: bool = False, size: int | None = None) -> int:
        """Import one header (size: as listed); a failure to read it whole is kept for retrying, any other refuses it."""
        try:
            added = self._import(key, id, size)
        except (UnreadableChunk, BucketError) as exc:
            if not retrying:
                log.warning("bucket: header %s not readable now, kept to try again: %s", key, exc)
                self._keep_retry(key)
            return 0
        except (ProtocolError, StoreError, OSError) as exc:
            self.refused.remember(key, str(exc))
            log.warning("bucket: header %s refused: %s", key, exc)
            added = 0
        if retrying:
            self._forget_retry(key)
        return added

    def _keep_retry(self, key: str) -> None:
        conn = self.store.db
        with transaction(conn):
            conn.execute("INSERT OR IGNORE INTO bucket_state(key, value) VALUES (?, '')", (RETRY_PREFIX + key,))
            count = conn.execute("SELECT COUNT(*) FROM bucket_state WHERE key >= ? AND key < ?",
                                 (RETRY_PREFIX, RETRY_PREFIX + "\uffff")).fetchone()[0]  # fmt: skip
            if count > MAX_RETRIED:
                log.warning("bucket: more than %d headers wait to be read again; the oldest is dropped", MAX_RETRIED)
                conn.execute("DELETE FROM bucket_state WHERE key = (SELECT MIN(key) FROM bucket_state WHERE key >= ?"
                             " AND key < ?)", (RETRY_PREFIX, RETRY_PREFIX + "\uffff"))  # fmt: skip

    def _forget_retry(self, key: str) -> None:
        conn = self.store.db
        with transaction(conn):
            conn.execute("DELETE FROM bucket_state WHERE key = ?", (RETRY_PREFIX + key,))

    def _learn(self) -> int:
        conn = self.store.db
        row = conn.execute("SELECT value FROM bucket_state WHERE key = ?", (MARKER,)).fetchone()
        newest = seen = int(row[0]) if row else 0
        start = layout.header_marker(self.bucket.prefix, newest - LOOKBACK_US) if row else ""
        # A key stamped in the future (a node's clock far ahead, or anyone who can write to the
        # bucket) moves the mark no further than now + LOOKBACK_US: headers published after it
        # at the right time are still listed (it is listed again each look, a known ID: skipped).
        ceiling = time.time_ns() // 1000 + LOOKBACK_US
        added = 0
        for key, size in self.bucket.storage.list_sized_after(self.bucket.prefix + layout.HEADERS, start):
            parsed = layout.parse_header_key(self.bucket.prefix, key)
            if parsed is None or key in self.refused:
                continue
            micros, id = parsed
            newest = max(newest, min(micros, ceiling))
            known = self.store.info(id)
            if known is not None and (known.data_complete or key in self.applied):
                continue  # a tx pending here is completed by a later manifest with its chunks
            added += self._try(key, id, size=size)
        if newest != seen or row is None:  # no write (and no fsync) for a poll that found nothing new
            with transaction(conn):
                conn.execute("INSERT OR REPLACE INTO bucket_state(key, value) VALUES (?, ?)", (MARKER, str(newest)))
            window = layout.header_marker(self.bucket.prefix, newest - LOOKBACK_US)  # where the next look starts
            self.refused.forget_before(window)
            self.applied.forget_before(window)
        return added

    def _header_bytes(self, key: str, size: int | None) -> bytes | None:
        """Given a header key and its listed size (None: not listed now), return its bytes, or None
        when it is gone. Security: an object past MAX_MANIFEST is refused (MalformedData) unread
        when listed so, and never more than MAX_MANIFEST + 1 bytes of it are read whatever it is
        now: anyone who can write to the bucket cannot make a node hold a huge object in memory."""
        if size is not None and not 0 < size <= MAX_MANIFEST:
            raise MalformedData(f"header object {key} is {size} bytes, not a manifest (at most {MAX_MANIFEST}); not read")
        data = self.bucket.storage.get_range(key, 0, MAX_MANIFEST + 1)
        if data is not None and len(data) > MAX_MANIFEST:
            raise MalformedData(f"header object {key} is more than {MAX_MANIFEST} bytes, not a manifest")
        return None if data is None else bytes(data)

    def _import(self, key: str, id: str, size: int | None = None) -> int:
        data = self._header_bytes(key, size)
        if data is None:
            return 0
        manifest = decode(data)
        if manifest.id != id:
            raise MalformedData(f"header object {key} is of {manifest.id}")
        if manifest.kind == "tx":
            tx = Transaction.from_json(json.loads(manifest.raw_header))
            if tx.id != id:
                raise MalformedData(f"header object {key} holds tx {tx.id}")
            if manifest.pending:
                return self._index_pending(key, tx)
            if tx.format == 2 and tx.data_size > 0:
                self._index_tx(tx, manifest)
                return 1
            stream = ChunkStream(self.bucket, manifest) if tx.data_size else None
            with self.bucket.importing(manifest):  # its chunks, verified by the put, noted with their spans
                try:
                    self.store.put_tx(tx, stream)
                except Exception:
                    if stream is not None and stream.failure is not None:
                        raise stream.failure from None
                    raise
            if stream is not None:
                self.bucket.rebuild_spans(stream.bad_spans, tx.id)
            return 1
        stream = ChunkStream(self.bucket, manifest, prefix=manifest.raw_header)
        with self.bucket.importing(manifest):
            try:
                info = self.store.put_item(stream)
            except Exception:
                if stream.failure is not None:
                    raise stream.failure from None  # the bucket's fault, not the item's: tried again
                raise
        if info.id != id:
            raise MalformedData(f"header object {key} holds item {info.id}")
        self.bucket.rebuild_spans(stream.bad_spans, id)
        return 1

    def _index_pending(self, key: str, tx: Transaction) -> int:
        """Index a tx header published before its data (served as pending here until its chunks are published)."""
        self.applied.remember(key)
        if tx.format != 2 or tx.data_size == 0 or self.store.info(tx.id) is not None:
            return 0
        with self.bucket.importing():
            self.store.put_tx(tx)  # verified there; stored without data, as a POST /tx of the header
        return 1

    def _index_tx(self, tx: Transaction, manifest: Manifest) -> None:
        """Index a format-2 tx whose data stays in the bucket, once its manifest is proven."""
        # Security: signature first, then the chunk list must rebuild the signed data_root.
        verify_tx(tx)
        if manifest.data_size != tx.data_size or any(sha is None for *_, sha in manifest.chunks):
            raise MalformedData(f"header object of {tx.id}: data_size or chunk SHA-256s do not match the tx")
        shas = {offset: sha for offset, _, _, sha in manifest.chunks if sha is not None}  # none is, checked above
        empty = hashlib.sha256(b"").digest()
        leaves = [merkle.Chunk(shas.get(s, empty), s, e) for s, e in merkle.chunk_ranges(tx.data_size)]
        if merkle.compute_root(leaves) != tx.data_root:
            raise MalformedData(f"header object of {tx.id}: chunk list does not rebuild its data_root")
        conn = self.store.db
        with transaction(conn):
            held = conn.execute("SELECT seq, data_complete FROM objects WHERE id = ?", (tx.id,)).fetchone()
            if held is not None and held["data_complete"]:
                return
            conn.executemany(
                "INSERT OR IGNORE INTO chunks(hash, segment_id, offset, stored_size, size, codec, sha256)"
                " VALUES (?, ?, 0, ?, ?, ?, ?)",
                [(b3, BUCKET_SEGMENT, size, size, codec.RAW, sha) for _, size, b3, sha in manifest.chunks],
            )
            if held is None:
                seq = insert_object(conn, tx_row(tx), tx.tags)
            else:  # its header was here, pending: its data is now whole in the bucket
                seq = held["seq"]
                conn.execute("UPDATE objects SET data_complete = 1 WHERE seq = ?", (seq,))
                conn.execute("DELETE FROM bucket_pending WHERE id = ?", (tx.id,))
            insert_chunk_list(conn, seq, manifest.chunks)
            assign_weave_range(conn, seq, tx.format, tx.data_size)
            conn.executemany("INSERT OR IGNORE INTO bucket_chunks(hash) VALUES (?)", [(c[2],) for c in manifest.chunks])
            conn.execute("INSERT OR IGNORE INTO bucket_published(id) VALUES (?)", (tx.id,))
            record_spans(conn, span_rows(manifest))
        self.store.bundles.unbundle(self.store.info(tx.id))

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
        self.id = manifest.id
        self.chunks = iter(zip(manifest.chunks, manifest.locations or [None] * len(manifest.chunks)))
        self.buffer = memoryview(bytes(prefix))
        self.failure: UnreadableChunk | BucketError | None = None  # why the data could not be read
        self.bad_spans: set[bytes] = set()  # spans holding a chunk repaired from a peer

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while not len(self.buffer):
            entry = next(self.chunks, None)
            if entry is None:
                return b""
            (offset, size, address, sha256), where = entry
            try:
                raw = self.bucket.read_manifest_chunk(address, size, where)
            except BucketError as exc:
                self.failure = exc
                raise
            # Security: a bucket object is used only when it hashes to the address its manifest names.
            if raw is None or len(raw) != size or blake3.blake3(raw).digest() != address:
                repairer = self.bucket.repairer
                try:
                    raw = repairer.span(self.id, offset, address, size, sha256, write=where is None) if repairer else None
                except BucketError as exc:  # RepairBusy: peers busy now; the header is tried again later
                    self.failure = exc
                    raise
                if raw is not None and where is not None:
                    self.bad_spans.add(where[0])  # rebuilt once the object is indexed (its chunks known here)
            if raw is None:
                self.failure = UnreadableChunk(f"bucket chunk {address.hex()} (at {offset}) is missing or corrupt")
                raise self.failure
            self.buffer = memoryview(raw)
        n = len(self.buffer) if n is None or n < 0 else n
        out, self.buffer = bytes(self.buffer[:n]), self.buffer[n:]
        return out
