"""Moving chunk data to and from the bucket in spans: several consecutive chunks per request.

On SeaweedFS here a request costs about as much server CPU as 100 KB of data
(bench/seaweed_ceiling.py): one bucket object per 256 KiB chunk spends a third of a GET's
time on requests. A put therefore writes its new chunks SPAN_CHUNKS at a time, back to back,
as one object `spans/<name>` (layout.py), the name being the BLAKE3 of the chunk addresses in
order: content-addressed like a chunk (the addresses fix the bytes), and free to compute. A
read asks for the chunks it needs from one span with one ranged GET and hands out each
chunk's bytes (copied out of the answer on the read thread), which the ChunkReader verifies against BLAKE3 like any chunk; the
SHA-256 the index holds for a chunk is checked here before that.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import blake3

from permastore.store.reader import BUCKET_SEGMENT

SPAN_CHUNKS = 16  # 4 MiB spans: past that, neither PUTs nor GETs get faster here
SPANS_IN_FLIGHT = 6  # a put's spans being uploaded at once (24 MiB held at most)
READ_AHEAD = 128  # chunks requested ahead of a read (32 MiB: 8 spans' GETs in flight)

Location = tuple[bytes, int]  # (span name, offset of the chunk in the span)


def span_name(addresses: list[bytes]) -> bytes:
    """Given the addresses of a span's chunks in order, return the span's name."""
    return blake3.blake3(b"".join(addresses)).digest()


class SpanBuilder:
    """Chunks appended back to back into one buffer, for one span object."""

    def __init__(self):
        self.data = bytearray()
        self.addresses: list[bytes] = []
        self.offsets: list[int] = []

    def add(self, address: bytes, chunk) -> None:
        self.offsets.append(len(self.data))
        self.addresses.append(address)
        self.data += chunk

    def locations(self) -> list[tuple[bytes, bytes, int]]:
        """(chunk address, span name, offset) of every chunk in it."""
        name = span_name(self.addresses)
        return [(address, name, offset) for address, offset in zip(self.addresses, self.offsets)]


class EarlyUploads:
    """A put's new chunks gathered into spans and uploaded as they are written.

    At most SPANS_IN_FLIGHT spans are held: a put whose bucket is slower than its disk is
    slowed to the bucket's pace (add blocks) instead of holding the object in memory. Spans
    of a put that then fails stay in the bucket unreferenced: content-addressed, they are the
    same bytes a later put of the same chunks writes; its uploads are discarded (discard), so
    nothing after it on the thread waits on them.
    """

    def __init__(self, bucket):
        self.bucket = bucket
        self.slots = threading.BoundedSemaphore(SPANS_IN_FLIGHT)
        self.futures: list = []
        self.span = SpanBuilder()
        self.addresses: set[bytes] = set()  # every chunk added: whose put these uploads belong to

    def add(self, address: bytes, chunk) -> None:
        self.addresses.add(address)
        self.span.add(address, chunk)
        if len(self.span.addresses) >= SPAN_CHUNKS:
            self._submit()

    def _submit(self) -> None:
        span, self.span = self.span, SpanBuilder()
        self.slots.acquire()
        try:
            future = self.bucket._pool.submit(self._upload, span)
        except BaseException:
            self.slots.release()
            raise
        self.futures.append(future)

    def _upload(self, span: SpanBuilder) -> list[tuple[bytes, bytes, int]]:
        try:
            return self.bucket.put_span(span)
        finally:
            self.slots.release()

    def wait(self) -> list[tuple[bytes, bytes, int]]:
        """Upload the last span; return every chunk's (address, span, offset) once all are in; raise the first error."""
        if self.span.addresses:
            self._submit()
        return [location for future in self.futures for location in future.result()]

    def discard(self) -> None:
        """The put failed or was abandoned: drop the span being built and cancel uploads not started
        (those running finish unreferenced; nobody waits on them)."""
        self.span = SpanBuilder()
        for future in self.futures:
            future.cancel()
        self.futures = []


class RangeRead:
    """One ranged GET of consecutive chunks of one span, split into the chunks' bytes.

    The GET, the SHA-256 checks and the copies out of the answer run on a read thread, so a
    reader's own thread is left only BLAKE3 (ChunkReader) and the write: two cores share a read.
    """

    def __init__(self, span: bytes, start: int):
        self.span = span
        self.start = self.end = start
        self.chunks: list[tuple[bytes, int, int]] = []  # (address, offset in the span, size)
        self.future: Future | None = None  # set when sent, before any chunk of it is handed out

    def follows(self, where: Location, limit: int) -> bool:
        return where[0] == self.span and where[1] == self.end and len(self.chunks) < limit

    def extend(self, address: bytes, size: int) -> Callable[[], bytes]:
        """Add the next chunk of the span; return a callable giving its checked bytes once the GET is in."""
        at = self.end
        self.chunks.append((address, at, size))
        self.end += size

        def fetched() -> bytes:
            assert self.future is not None  # FetchAhead sends a read before yielding its chunks
            piece = self.future.result()[at]  # raises OSError when the GET failed
            if isinstance(piece, OSError):
                raise piece
            return piece

        return fetched

    def run(self, bucket) -> dict[int, bytes | OSError]:
        """On a read thread: GET the range; return each chunk's bytes, or the OSError that refused it."""
        data = bucket.read_span(self.span, self.start, self.end)
        pieces: dict[int, bytes | OSError] = {}
        for address, at, size in self.chunks:
            try:
                pieces[at] = bucket.check_sha256(address, data[at - self.start : at - self.start + size])
            except OSError as exc:
                pieces[at] = exc
        return pieces


class FetchAhead:
    """Given runs of chunk rows in read order, yield (run, fetched) with bucket reads started ahead.

    fetched is None for a run read locally, or for a chunk held only in the bucket a callable
    returning its raw bytes. Chunks that lie back to back in one span are asked for with one
    ranged GET (up to SPAN_CHUNKS); chunks of the first layout with one GET each.
    """

    def __init__(self, bucket, runs):
        self.bucket = bucket
        self.runs = iter(runs)
        self.pending: deque = deque()  # (run, fetched, RangeRead or None)
        self.open: RangeRead | None = None  # the GET being assembled, not yet sent

    def __iter__(self) -> Iterator[tuple[list, object]]:
        exhausted = False
        try:
            while True:
                while not exhausted and len(self.pending) < READ_AHEAD:
                    run = next(self.runs, None)
                    if run is None:
                        exhausted = True
                    else:
                        self._add(run)
                if not self.pending:
                    return
                run, fetched, read = self.pending.popleft()
                if read is not None and read is self.open:
                    self._send()
                yield run, fetched
        except GeneratorExit:
            for _, _, read in self.pending:
                if read is not None and read.future is not None:
                    read.future.cancel()
            raise

    def _add(self, run: list) -> None:
        row = run[0]
        if len(run) != 1 or row["segment_id"] != BUCKET_SEGMENT:
            self.pending.append((run, None, None))
            return
        address, size = bytes(row["hash"]), row["size"]
        where = self.bucket.location(address)
        if where is None:  # the first layout: one object per chunk
            future = self.bucket._reads.submit(self.bucket.load_chunk, address, size)
            self.pending.append((run, future.result, None))
            return
        if self.open is None or not self.open.follows(where, SPAN_CHUNKS):
            self._send()
            self.open = RangeRead(*where)
        read = self.open
        self.pending.append((run, read.extend(address, size), read))
        if len(read.chunks) >= SPAN_CHUNKS:
            self._send()

    def _send(self) -> None:
        read, self.open = self.open, None
        if read is not None:
            read.future = self.bucket._reads.submit(read.run, self.bucket)
