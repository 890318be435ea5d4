"""Repair of bad or missing bucket chunks from peers (`serve --peer`, `fsck --repair --peer`).

The trust anchor is the local index: every chunk row's BLAKE3 address (and, for L1 txs,
its SHA-256, the leaf proven against the signed data_root) was checked when the object was
indexed. A peer is asked for the chunk's span of an object that holds it; its bytes count
only when they hash to both, and are then written over the bucket object (an unconditional
put: the conditional one would keep the bad object) and served.

A chunk inside a span (`spans/<name>`, transfer.py) is fixed by rebuilding the whole span:
every chunk of it, in offset order, from this folder's verified copy, else from the span
object itself where that slice still verifies, else proven bytes from a peer; the span's
name is re-checked from the chunk addresses (the name fixes the bytes), and the whole span
is written over the old one, so every node reading that span is fixed. A span with a chunk
none of those can give is left as it is (the read that needed the chunk is still answered
from the peer's bytes) and reported.

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
from permastore.store.bucket.transfer import span_name
from permastore.store.errors import CorruptChunk
from permastore.store.reader import BUCKET_SEGMENT

log = logging.getLogger("permastore.bucket")

# A chunk no peer could give is not asked again for this long (a stranger re-reading a bad
# chunk must not turn each read into requests to every peer).
RETRY_AFTER_S = 30.0
MAX_REPAIRS_AT_ONCE = 4  # requests to peers at once, whatever asks them (reads, span rebuilds, fsck)
# A read that finds every slot taken waits this long at most, then fails (RepairBusy, a 503):
# a server thread is not held while slow peers answer other reads.
SLOT_WAIT_S = 1.0
MAX_REMEMBERED = 10_000  # chunks remembered as unrepairable


class RepairBusy(BucketError):
    """A bad bucket chunk could not be repaired now: MAX_REPAIRS_AT_ONCE peer requests are in
    progress here already (the read may be retried; nothing was served)."""


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
        self._rebuilding: set[bytes] = set()  # spans being rebuilt now
        self._slots = threading.BoundedSemaphore(MAX_REPAIRS_AT_ONCE)
        self._lock = threading.Lock()

    def chunk(self, id: str, row) -> bytes | None:
        """Given the object a read failed on and the chunk's row, return its verified bytes from a
        peer (and rewrite the bucket object: the chunk's, or the whole span holding it), or None
        when no peer gave them."""
        address = bytes(row["hash"])
        if self._failed_recently(address):
            return None  # no bucket GET either: a stranger re-reading a bad chunk costs nothing more
        where = self.bucket.location(address)
        if where is not None:
            fresh = self._from_bucket_now(address, row["size"])
            if fresh is not None:
                return fresh  # repaired meanwhile (another read rebuilt the span): nothing to ask
        spans = [(id, row["offset"])] if "offset" in row.keys() else self._owners(address)
        ask = lambda: self._from_peers(spans, address, row["size"], write=where is None)  # noqa: E731
        raw = self._guarded(address, ask)
        if raw is not None and where is not None:
            self.rebuild_span(where[0], {address: raw}, id)
        return raw

    def span(self, id: str, offset: int, address: bytes, size: int, sha256: bytes | None,
             write: bool = True) -> bytes | None:  # fmt: skip
        """Learning: given an object not indexed yet, a chunk's offset, address, size (and SHA-256)
        from its manifest, return bytes from a peer that hash to the address, or None. With write,
        they are written to the chunk's own object (whatever hashes to a key is that key's content);
        a chunk inside a span is not written here: its span is rebuilt once the object is indexed
        (rebuild_span). The object's own checks (signature, data_root) still run on them."""
        return self._guarded(address, lambda: self._from_peers([(id, offset)], address, size, sha256, write))

    def _failed_recently(self, address: bytes) -> bool:
        """True when no peer had the chunk less than RETRY_AFTER_S ago (a dict read: no lock needed)."""
        return time.monotonic() - self._failed.get(address, -RETRY_AFTER_S) < RETRY_AFTER_S

    def _guarded(self, address: bytes, ask: Callable[[], bytes | None]) -> bytes | None:
        """Ask peers for one chunk: not again soon when none had it, not twice at once, a few at a time."""
        with self._lock:
            if self._failed_recently(address):
                return None
            if address in self._asking:
                # Already being asked here: fail now rather than wait. Two nodes that are each
                # other's peers over one bad bucket object would otherwise ask each other in a loop.
                return None
            self._asking.add(address)
        try:
            raw = ask()  # RepairBusy when no peer request could start: not remembered as failed
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
        or a peer, written over the bucket object (the chunk's, or its whole span rebuilt); None
        when neither has them or the span cannot be rebuilt."""
        raw, source = self._from_local(address), "this folder's copy"
        if raw is None:
            try:
                raw, source = self._from_peers(self._owners(address), address, size, write=False), "a peer"
            except RepairBusy as exc:
                log.warning("bucket repair: chunk %s not repaired: %s", address.hex(), exc)
                return None
        if raw is None:
            return None
        where = self.bucket.location(address)
        if where is not None:
            return raw if self.rebuild_span(where[0], {address: raw}, "(fsck)") else None
        return raw if self._rewrite(address, raw, "(fsck)", source) else None

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
        """One request to a peer, inside the limit of MAX_REPAIRS_AT_ONCE: its (unverified) bytes,
        or None; RepairBusy when no slot frees within SLOT_WAIT_S. The peer's answer is closed
        whatever happens (its connection goes back, or away)."""
        if not self._slots.acquire(timeout=SLOT_WAIT_S):
            raise RepairBusy(f"chunk at {offset} of {id} is bad in the bucket, and repairing it is busy "
                             f"({MAX_REPAIRS_AT_ONCE} requests to peers at once already); retry later")  # fmt: skip
        answer = None
        try:
            answer = peer.get(id, offset, offset + size)
            pieces, got = [], 0
            for piece in answer:
                pieces.append(piece)
                got += len(piece)
                if got > size:
                    return None
            return b"".join(pieces)
        except Exception as exc:  # a peer down, lacking it, or answering nonsense: try the next
            log.info("bucket repair: %r has no chunk at %d of %s: %s", peer, offset, id, exc)
            return None
        finally:
            _close(answer)
            self._slots.release()

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

    # -- spans -------------------------------------------------------------------------

    def rebuild_span(self, span: bytes, known: dict[bytes, bytes], id: str) -> bool:
        """Given a span's name and chunks already verified (address -> bytes), rebuild the span
        from verified chunks and write it over the bucket object; False when a chunk of it
        cannot be had (the span is left as it is), the index cannot name its chunks, or the
        bucket refuses."""
        with self._lock:
            if span in self._rebuilding:
                return False  # another read is rebuilding it
            self._rebuilding.add(span)
        try:
            members = self._span_members(span)
            if members is None:
                log.warning("bucket repair: span %s (of %s): its chunks are not all known here; left as is", span.hex(), id)
                return False
            current: dict[bytes, bytes] | None = None
            data = bytearray()
            for address, _, size in members:
                raw = known.get(address) or self._from_local(address)
                if raw is None:
                    if current is None:
                        current = self._from_span_object(span, members)
                    try:
                        raw = current.get(address) or self._peer_chunk(address, size)
                    except RepairBusy:
                        raw = None  # peers busy: left for the next read or fsck --repair to rebuild
                # Security: only bytes that are the indexed chunk go into the span.
                if raw is None or not self._verified(address, size, raw):
                    log.warning("bucket repair: span %s (of %s): chunk %s cannot be rebuilt; span left as is",
                                span.hex(), id, address.hex())  # fmt: skip
                    return False
                data += raw
            return self._write_span(span, bytes(data), [m[0] for m in members], id)
        finally:
            with self._lock:
                self._rebuilding.discard(span)

    def _span_members(self, span: bytes) -> list[tuple[bytes, int, int]] | None:
        """(address, offset, size) of a span's chunks in order, or None unless they fill it from 0
        and their addresses give its name."""
        rows = self.store.db.execute(
            "SELECT s.hash, s.offset, k.size FROM bucket_span_members s JOIN chunks k ON k.hash = s.hash"
            " WHERE s.span = ? ORDER BY s.offset",
            (span,),
        ).fetchall()
        members, at = [], 0
        for r in rows:
            if r["offset"] != at:
                return None
            members.append((bytes(r["hash"]), r["offset"], r["size"]))
            at += r["size"]
        if not members or span_name([m[0] for m in members]) != span:
            return None
        return members

    def _from_span_object(self, span: bytes, members: list[tuple[bytes, int, int]]) -> dict[bytes, bytes]:
        """The chunks among members whose slices of the span object, as it is now, verify."""
        end = members[-1][1] + members[-1][2]  # what the span should hold: never more is read
        try:
            data = self.bucket.storage.get_range(layout.span_key(self.bucket.prefix, span), 0, end)
        except BucketError:
            return {}
        if data is None:
            return {}
        good = {}
        for address, offset, size in members:
            raw = bytes(data[offset : offset + size])
            if self._verified(address, size, raw):
                good[address] = raw
        return good

    def _from_bucket_now(self, address: bytes, size: int) -> bytes | None:
        """The chunk as the bucket holds it now (one ranged GET), when it verifies; else None."""
        try:
            raw = self.bucket.load_chunk(address, size)
        except OSError:
            return None
        return raw if self._verified(address, size, raw) else None

    def _peer_chunk(self, address: bytes, size: int) -> bytes | None:
        """Another chunk of a span being rebuilt, from peers: as any chunk asked of them (_guarded)."""
        return self._guarded(address, lambda: self._from_peers(self._owners(address), address, size, write=False))

    def _verified(self, address: bytes, size: int, raw: bytes) -> bool:
        if len(raw) != size or blake3.blake3(raw).digest() != address:
            return False
        sha256 = self._sha256(address)
        return sha256 is None or hashlib.sha256(raw).digest() == sha256

    def _write_span(self, span: bytes, data: bytes, addresses: list[bytes], id: str) -> bool:
        try:
            # Unconditional: the key holds bad bytes (or none); If-None-Match would keep them.
            self.bucket.storage.put(layout.span_key(self.bucket.prefix, span), data)
        except BucketError as exc:
            log.warning("bucket repair: span %s (of %s) rebuilt but not written back: %s", span.hex(), id, exc)
            return False
        log.warning("bucket repair: span %s (of %s) was bad in the bucket; rebuilt from %d verified chunks and rewritten",
                    span.hex(), id, len(addresses))  # fmt: skip
        with self._lock:
            for address in addresses:
                self._failed.pop(address, None)
        return True


def _close(answer) -> None:
    """Close a peer's answer (a DataStream, a generator) when it can be; never raises."""
    close = getattr(answer, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # closing a broken connection: nothing more to do with it
            log.debug("bucket repair: closing a peer's answer: %s", exc)
