"""Streaming Arweave chunker: cuts a stream of blocks into Arweave's chunks.

Arweave's cut only depends on how many bytes are left, so a full 256 KiB chunk is
certain once at least MAX_CHUNK_SIZE + MIN_CHUNK_SIZE bytes are buffered ahead;
the tail is cut with ``merkle.chunk_ranges`` at the end of the stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from permastore.protocol.merkle import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, chunk_ranges

# Bytes that must be known beyond a chunk before cutting it at full size.
LOOKAHEAD = MAX_CHUNK_SIZE + MIN_CHUNK_SIZE


class _Buffer:
    """Blocks not yet cut, as views; taking n bytes copies only when they straddle blocks."""

    def __init__(self):
        self.parts: deque[memoryview] = deque()
        self.size = 0

    def add(self, block) -> None:
        self.parts.append(memoryview(block).toreadonly())
        self.size += len(block)

    def take(self, n: int) -> memoryview:
        if n == 0:
            return memoryview(b"")
        self.size -= n
        first = self.parts[0]
        if len(first) >= n:
            if len(first) == n:
                self.parts.popleft()
            else:
                self.parts[0] = first[n:]
            return first[:n]
        out = bytearray()
        while len(out) < n:
            first = self.parts[0]
            need = n - len(out)
            if len(first) <= need:
                out += first
                self.parts.popleft()
            else:
                out += first[:need]
                self.parts[0] = first[need:]
        return memoryview(bytes(out))


def arweave_chunks(blocks: Iterable[bytes]) -> Iterator[memoryview]:
    """Given the data as immutable blocks of any sizes, yield its Arweave chunks in order.

    Includes the empty trailing chunk of a non-zero multiple of 256 KiB (data_root
    needs it); yields nothing for empty data.
    """
    buffer = _Buffer()
    for block in blocks:
        if not block:
            continue
        buffer.add(block)
        while buffer.size >= LOOKAHEAD:
            yield buffer.take(MAX_CHUNK_SIZE)
    for chunk_start, chunk_end in chunk_ranges(buffer.size):
        yield buffer.take(chunk_end - chunk_start)
