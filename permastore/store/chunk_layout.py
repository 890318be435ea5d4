"""Arweave's chunk layout of a data size, in constant time and memory.

``merkle.chunk_ranges(size)`` lists every chunk; for a size claimed by a stranger (10^15
in a POST /chunk) that list alone is gigabytes. Here the layout is computed: every chunk
is a full 256 KiB one except the last one or two (balanced when the tail would be under
32 KiB), so only those need to be spelled out.
"""

from __future__ import annotations

from permastore.protocol.merkle import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE


def tail_ranges(size: int) -> tuple[int, list[tuple[int, int]]]:
    """Given a data size, return (number of leading full chunks, the non-empty chunks after them)."""
    if size <= 0:
        return 0, []
    full, rest = divmod(size, MAX_CHUNK_SIZE)
    if rest == 0:
        return full, []  # (the empty trailing chunk only matters to the data_root)
    if full and rest < MIN_CHUNK_SIZE:
        # The last full chunk and the short tail are balanced into two.
        start = (full - 1) * MAX_CHUNK_SIZE
        left = -(-(MAX_CHUNK_SIZE + rest) // 2)
        return full - 1, [(start, start + left), (start + left, size)]
    return full, [(full * MAX_CHUNK_SIZE, size)]


def chunk_count(size: int) -> int:
    """Given a data size, return how many non-empty chunks it is cut into."""
    full, tail = tail_ranges(size)
    return full + len(tail)


def is_chunk(size: int, start: int, end: int) -> bool:
    """Given a data size and a byte range, return True when [start, end) is one of its chunks."""
    full, tail = tail_ranges(size)
    if start < full * MAX_CHUNK_SIZE:
        return start % MAX_CHUNK_SIZE == 0 and end == start + MAX_CHUNK_SIZE
    return (start, end) in tail


def chunk_at(size: int, index: int) -> tuple[int, int]:
    """Given a data size and a chunk index, return that chunk's [start, end)."""
    full, tail = tail_ranges(size)
    if 0 <= index < full:
        return index * MAX_CHUNK_SIZE, (index + 1) * MAX_CHUNK_SIZE
    if 0 <= index - full < len(tail):
        return tail[index - full]
    raise IndexError(f"chunk {index} of {size} bytes")


def chunk_index_of(size: int, offset: int) -> int:
    """Given a data size and a byte offset inside it, return the index of the chunk holding it."""
    if not 0 <= offset < size:
        raise IndexError(f"offset {offset} outside {size} bytes")
    full, tail = tail_ranges(size)
    if offset < full * MAX_CHUNK_SIZE:
        return offset // MAX_CHUNK_SIZE
    for number, (start, end) in enumerate(tail):
        if start <= offset < end:
            return full + number
    raise IndexError(f"offset {offset} outside {size} bytes")  # unreachable for a valid layout
