"""The put pipeline: stream data in, cut it into Arweave chunks, address them by BLAKE3,
write the new ones, and hash what the signature needs, with bounded memory.

Large objects run three ways at once: this thread reads 8 MiB blocks, one thread
folds them into the SHA-384 deep-hash (the pass an ID cannot do without), another
cuts chunks, BLAKE3s them (and SHA-256s them for L1 data_roots) and appends the new
ones to the object's own segment. hashlib and blake3 release the GIL on big buffers.
Small objects are done in this thread and written to a pack at commit.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import blake3

from permastore.protocol.deephash import BlobHasher
from permastore.protocol.merkle import DataRootBuilder
from permastore.store import codec
from permastore.store.chunker import arweave_chunks
from permastore.store.segments import ObjectSegmentWriter

BLOCK_SIZE = 8 * 1024 * 1024
SMALL_OBJECT_LIMIT = 4 * 1024 * 1024
QUEUE_DEPTH = 3
_EMPTY_SHA256 = hashlib.sha256(b"").digest()


@dataclass
class NewChunk:
    """A chunk this put writes: where its stored bytes are (or will be) and how."""

    hash: bytes
    size: int
    codec: int
    stored: bytes | None  # small path: bytes still to append to a pack
    offset: int = -1  # large path: offset in the object segment
    stored_size: int = 0
    sha256: bytes | None = None


@dataclass
class Ingested:
    """What a put streamed in: sizes, hashes, the chunk list and the chunks to record."""

    size: int = 0
    blob_hash: bytes | None = None
    data_root: bytes | None = None
    chunk_list: list = field(default_factory=list)  # (offset, size, blake3, sha256|None), non-empty chunks
    new_chunks: list = field(default_factory=list)  # NewChunk, in write order
    segment: ObjectSegmentWriter | None = None
    on_discard: Callable[[], None] | None = None  # run once by discard() (a bucket drops the put's uploads)

    @property
    def segment_is_object(self) -> bool:
        """True when the dedicated segment holds every byte of the object, in order."""
        return self.segment is not None and self.size > 0 and self.segment.size == self.size

    def discard(self) -> None:
        """Drop whatever this put wrote (nothing committed refers to it)."""
        if self.segment is not None:
            self.segment.discard()
            self.segment = None
        hook, self.on_discard = self.on_discard, None
        if hook is not None:
            hook()


def as_stream(data: Any) -> BinaryIO:
    """Given bytes or a binary file object, return something with .read(n)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(data))
    return data


class PrefixedStream(io.RawIOBase):
    """A stream that first returns ``prefix`` (bytes already read) and then reads on from ``stream``."""

    def __init__(self, prefix: bytes, stream):
        self.prefix = prefix
        self.stream = stream

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.prefix:
            out, self.prefix = self.prefix, b""
            return out
        return self.stream.read(n)


class _ChunkSink:
    """Per-chunk work shared by both paths: address, dedupe, SHA-256, data_root.

    With ``rewrite`` (large objects) a chunk that repeats one this put already wrote is
    written again in place, so the dedicated segment stays byte-for-byte the object
    (a model file then needs no second copy under views/); the index keeps the first
    copy's location. Chunks stored by earlier puts are still deduplicated.
    """

    def __init__(self, known: Callable[[bytes], bool], want_sha256: bool, result: Ingested, write, rewrite=None):
        self.known = known
        self.want_sha256 = want_sha256
        self.result = result
        self.write = write  # (chunk view, hash) -> NewChunk
        self.rewrite = rewrite  # chunk view -> None: write again, not indexed
        self.roots = DataRootBuilder() if want_sha256 else None
        self.seen: dict[bytes, bool] = {}  # address -> written by this put
        self.offset = 0

    def add(self, chunk: memoryview) -> None:
        size = len(chunk)
        sha = None
        if self.roots is not None:  # want_sha256
            sha = hashlib.sha256(chunk).digest() if size else _EMPTY_SHA256
            self.roots.add_hash(sha, size)
        if size == 0:
            return  # the empty trailing chunk only matters to the data_root
        address = blake3.blake3(chunk).digest()
        self.result.chunk_list.append((self.offset, size, address, sha))
        self.offset += size
        written = self.seen.get(address)
        if written and self.rewrite is not None:
            self.rewrite(chunk)
            return
        if written is not None or self.known(address):
            self.seen[address] = False
            return
        self.seen[address] = True
        new = self.write(chunk, address)
        new.sha256 = sha
        self.result.new_chunks.append(new)

    def finish(self) -> None:
        self.result.size = self.offset
        if self.roots is not None:
            self.result.data_root = self.roots.root()


def _read_head(stream, limit: int, progress) -> tuple[list[bytes], bool]:
    """Read until more than ``limit`` bytes or EOF; return (blocks, at_eof)."""
    blocks: list[bytes] = []
    total = 0
    while total <= limit:
        block = stream.read(BLOCK_SIZE)
        if not block:
            return blocks, True
        blocks.append(bytes(block))
        total += len(block)
        if progress:
            progress(len(block))
    return blocks, False


def ingest(
    data,
    segments_dir: Path,
    known: Callable[[bytes], bool],
    want_deep_hash: bool,
    want_sha256: bool,
    progress: Callable[[int], None] | None = None,
    expected_size: int | None = None,
    on_new_chunk: Callable[[bytes, memoryview], None] | None = None,
) -> Ingested:
    """Given data (bytes or a binary stream), stream it into chunks; return what was ingested.

    New chunks of a small object are returned unwritten (the caller appends them to
    a pack under the pack lock); a large object's are already in its sealed segment.
    on_new_chunk(address, chunk) sees each new chunk of a large object as it is written (a
    bucket starts uploading while the rest streams in); it may block to slow the put down.
    """
    stream = as_stream(data)
    head, at_eof = _read_head(stream, SMALL_OBJECT_LIMIT, progress)
    if at_eof:
        return _ingest_small(head, known, want_deep_hash, want_sha256)
    return _ingest_large(head, stream, segments_dir, known, want_deep_hash, want_sha256, progress, on_new_chunk)


def _ingest_small(blocks, known, want_deep_hash, want_sha256) -> Ingested:
    result = Ingested()
    data = b"".join(blocks)
    if want_deep_hash:
        hasher = BlobHasher()
        hasher.update(data)
        result.blob_hash = hasher.digest()

    def keep(chunk, address):
        kind, stored = codec.encode(chunk)
        return NewChunk(address, len(chunk), kind, stored, stored_size=len(stored))

    sink = _ChunkSink(known, want_sha256, result, keep)
    for chunk in arweave_chunks([data]):
        sink.add(chunk)
    sink.finish()
    return result


class _Worker(threading.Thread):
    """Runs ``handle(block)`` for each queued block until None; keeps the first error."""

    def __init__(self, handle, name):
        super().__init__(name=name, daemon=True)
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
        self.handle = handle
        self.error: BaseException | None = None

    def run(self):
        while True:
            block = self.queue.get()
            if block is None:
                return
            if self.error is None:
                try:
                    self.handle(block)
                except BaseException as exc:  # reported by the feeding thread
                    self.error = exc


class _BlockIter:
    """Turns the chunk worker's queue into the block iterator the chunker wants."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)

    def __iter__(self):
        while True:
            block = self.queue.get()
            if block is None:
                return
            yield block


def _feed(head: list, stream, progress, queues: list, failed) -> None:
    """Put the head blocks, then the stream's blocks, on every queue, until the stream ends or failed()."""
    block = head.pop(0) if head else None
    while block:
        for q in reversed(queues):  # the deep-hash worker first, as before
            q.put(block)
        if failed():
            return
        if head:
            block = head.pop(0)
            continue
        block = stream.read(BLOCK_SIZE)
        if block:
            block = bytes(block)
            if progress:
                progress(len(block))


def _ingest_large(head, stream, segments_dir, known, want_deep_hash, want_sha256, progress, on_new_chunk=None) -> Ingested:
    result = Ingested()
    segment = ObjectSegmentWriter(segments_dir)
    result.segment = segment

    def write(chunk, address):
        offset = segment.append(chunk)
        if on_new_chunk is not None:
            on_new_chunk(address, chunk)
        return NewChunk(address, len(chunk), codec.RAW, None, offset=offset, stored_size=len(chunk))

    sink = _ChunkSink(known, want_sha256, result, write, rewrite=segment.append)
    blocks = _BlockIter()
    chunk_error: list[BaseException] = []

    def cut_and_write():
        try:
            for chunk in arweave_chunks(blocks):
                sink.add(chunk)
            sink.finish()
        except BaseException as exc:
            chunk_error.append(exc)
            for _ in blocks:  # drain so the feeder never blocks on a dead consumer
                pass

    chunker = threading.Thread(target=cut_and_write, name="permastore-chunks", daemon=True)
    hasher = BlobHasher() if want_deep_hash else None
    hash_worker = _Worker(hasher.update, "permastore-deephash") if hasher else None
    chunker.start()
    if hash_worker:
        hash_worker.start()
    try:
        try:
            _feed(head, stream, progress, [blocks.queue] + ([hash_worker.queue] if hash_worker else []),
                  lambda: bool(chunk_error) or bool(hash_worker and hash_worker.error))  # fmt: skip
        finally:
            blocks.queue.put(None)
            if hash_worker:
                hash_worker.queue.put(None)
            chunker.join()
            if hash_worker:
                hash_worker.join()
        if chunk_error:
            raise chunk_error[0]
        if hash_worker and hash_worker.error:
            raise hash_worker.error
        if hasher:
            result.blob_hash = hasher.digest()
        segment.seal()
    except BaseException:
        result.discard()
        raise
    return result
