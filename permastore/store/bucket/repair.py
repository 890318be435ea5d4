"""Repair of bad or missing bucket chunks from peers (`serve --peer`, `fsck --repair --peer`).

The trust anchor is the local index: every chunk row's BLAKE3 address (and, for L1 txs,
its SHA-256, the leaf proven against the signed data_root) was checked when the object was
indexed. A peer is asked for the chunk's span of an object that holds it; its bytes count
only when they hash to both, and are then written over the bucket object (an unconditional
put: the conditional one would keep the bad object) and served.

The peers come from outside the store, behind `RangeSource`, the shape of
`permastore.sources.DataSource`: the composition root (`gateway.node`, the fsck command)
passes the fetch engine's peers (`Fetcher.peers.clients`). Nothing here imports them.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

import blake3

from permastore.store.bucket import layout
from permastore.store.bucket.storage import BucketError
from permastore.store.errors import CorruptChunk
from permastore.store.reader import BUCKET_SEGMENT

log = logging.getLogger("permastore.bucket")

# A chunk no peer could give is not asked again for this long (a stranger re-reading a bad
# chunk must not turn each read into requests to every peer).
RETRY_AFTER_S = 30.0
MAX_REPAIRS_AT_ONCE = 4  # chunks asked of peers at once (the next wait for a slot)
SLOT_WAIT_S = 60.0
MAX_REMEMBERED = 10_000  # chunks remembered as unrepairable


class RangeSource(Protocol):
    """A peer: given an ID and a span [start, end) of its data, its (unverified) bytes."""

    def get(self, id: str, start: int = 0, end: int | None = None) -> Iterable[bytes]: ...


class BucketRepairer:
    """Given a Store, its Bucket and a callable returning the peers, repair chunks from them."""

    def __init__(self, store, bucket, peers: Callable[[], list[RangeSource]]):
        self.store = store
        self.bucket = bucket
        self.peers = peers
        self._failed: dict[bytes, float] = {}  # address -> when no peer had it
        self._asking: set[bytes] = set()  # addresses being asked of peers now
        self._slots = threading.BoundedSemaphore(MAX_REPAIRS_AT_ONCE)
        self._lock = threading.Lock()

    def chunk(self, id: str, row) -> bytes | None:
        """Given the object a read failed on and the chunk's row, return its verified bytes from a
        peer (and rewrite the bucket object), or None when no peer gave them."""
        address = bytes(row["hash"])
        spans = [(id, row["offset"])] if "offset" in row.keys() else self._owners(address)
        return self._guarded(address, lambda: self._from_peers(spans, address, row["size"]))

    def span(self, id: str, offset: int, address: bytes, size: int, sha256: bytes | None) -> bytes | None:
        """Learning: given an object not indexed yet, a chunk's offset, address, size (and SHA-256)
        from its manifest, return bytes from a peer that hash to the address (rewritten into the
        bucket: whatever hashes to a key is that key's content), or None. The object's own checks
        (signature, data_root) still run on them."""
        return self._guarded(address, lambda: self._from_peers([(id, offset)], address, size, sha256))

    def _guarded(self, address: bytes, ask: Callable[[], bytes | None]) -> bytes | None:
        """Ask peers for one chunk: not again soon when none had it, not twice at once, a few at a time."""
        with self._lock:
            if time.monotonic() - self._failed.get(address, -RETRY_AFTER_S) < RETRY_AFTER_S:
                return None
            if address in self._asking:
                # Already being asked here: fail now rather than wait. Two nodes that are each
                # other's peers over one bad bucket object would otherwise ask each other in a loop.
                return None
            self._asking.add(address)
        try:
            if not self._slots.acquire(timeout=SLOT_WAIT_S):
                return None  # every slot held that long: peers are slow; the read fails as it would have
            try:
                raw = ask()
            finally:
                self._slots.release()
        finally:
            with self._lock:
                self._asking.discard(address)
        if raw is None:
            with self._lock:
                if len(self._failed) >= MAX_REMEMBERED:
                    self._failed.clear()  # bounded memory; at worst peers are asked again
                self._failed[address] = time.monotonic()
        return raw

    def address(self, address: bytes, size: int) -> bytes | None:
        """fsck: given a chunk's address and size, return its verified bytes from the local copy
        or a peer, written over the bucket object; None when neither has them."""
        raw, source = self._from_local(address), "this folder's copy"
        if raw is None:
            raw, source = self._from_peers(self._owners(address), address, size, write=False), "a peer"
        return raw if raw is not None and self._rewrite(address, raw, "(fsck)", source) else None

    def _from_local(self, address: bytes) -> bytes | None:
        """The chunk's bytes from this folder's own copy (a segment or the index), verified; None without one."""
        row = self.store.db.execute(
            "SELECT hash, segment_id, offset AS seg_offset, stored_size, size, codec, -1 AS idx FROM chunks"
            " WHERE hash = ? AND segment_id != ?",
            (address, BUCKET_SEGMENT),
        ).fetchone()
        if row is None:
            return None
        try:
            return self.store.chunks.load("(chunk)", row, from_bucket=False)
        except CorruptChunk:
            return None  # the local copy is bad too (fsck reports it)

    def _owners(self, address: bytes) -> list[tuple[str, int]]:
        """(ID, offset) of every L1 object whose data holds the chunk (a bundled item is read through its parent)."""
        rows = self.store.db.execute(
            "SELECT o.id, c.offset FROM object_chunks c JOIN objects o ON o.seq = c.seq WHERE c.hash = ?",
            (address,),
        ).fetchall()
        return [(r["id"], r["offset"]) for r in rows]

    def _from_peers(self, spans: list[tuple[str, int]], address: bytes, size: int,
                    sha256: bytes | None = None, write: bool = True) -> bytes | None:  # fmt: skip
        sha256 = sha256 or self._sha256(address)
        for id, offset in spans:
            for peer in self.peers():
                raw = self._ask(peer, id, offset, size)
                # Security: a peer's bytes count only when they are the indexed chunk.
                if raw is None or len(raw) != size or blake3.blake3(raw).digest() != address:
                    continue
                if sha256 is not None and hashlib.sha256(raw).digest() != sha256:
                    continue
                if write:
                    self._rewrite(address, raw, id, repr(peer))
                return raw
        return None

    def _ask(self, peer: RangeSource, id: str, offset: int, size: int) -> bytes | None:
        try:
            pieces, got = [], 0
            for piece in peer.get(id, offset, offset + size):
                pieces.append(piece)
                got += len(piece)
                if got > size:
                    return None
            return b"".join(pieces)
        except Exception as exc:  # a peer down, lacking it, or answering nonsense: try the next
            log.info("bucket repair: %r has no chunk at %d of %s: %s", peer, offset, id, exc)
            return None

    def _sha256(self, address: bytes) -> bytes | None:
        row = self.store.db.execute("SELECT sha256 FROM chunks WHERE hash = ?", (address,)).fetchone()
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def _rewrite(self, address: bytes, raw: bytes, id: str, source: str) -> bool:
        """Write verified bytes over the chunk's bucket object; False when the bucket refuses."""
        key = layout.chunk_key(self.bucket.prefix, address)
        try:
            # Unconditional: the key holds bad bytes (or none); If-None-Match would keep them.
            self.bucket.storage.put(key, raw)
        except BucketError as exc:  # the read is still answered with the verified bytes
            log.warning("bucket repair: chunk %s of %s verified from %s but not written back: %s",
                        address.hex(), id, source, exc)  # fmt: skip
            return False
        log.warning("bucket repair: chunk %s of %s was bad in the bucket; rewritten from %s", address.hex(), id, source)
        with self._lock:
            self._failed.pop(address, None)
        return True
