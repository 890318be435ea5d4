"""ANS-104 binary bundles.

    item count              32 bytes, little-endian
    per item: size (32 LE) + raw ID (32)
    the items, back to back

An item's data may itself be a bundle (nested bundles): parse it the same way
with a ``read_at`` that reads inside that item's data.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import b64url
from .ans104 import parse_header
from .errors import MalformedData

COUNT_SIZE = 32
ENTRY_SIZE = 64
ID_SIZE = 32
# Index entries read at a time by iter_bundle_index: memory stays bounded whatever the count.
ENTRIES_PER_READ = 4096


@dataclass(frozen=True)
class BundleEntry:
    """One item of a bundle: its ID and where its bytes lie within the bundle."""

    id: str
    offset: int
    size: int


def _le(data: bytes | memoryview) -> int:
    return int.from_bytes(data, "little")


def _read_exact(read_at: Callable[[int, int], bytes], offset: int, size: int) -> bytes:
    data = read_at(offset, size)
    if len(data) != size:
        raise MalformedData(f"bundle ends early: wanted {size} bytes at {offset}, got {len(data)}")
    return data


def parse_bundle_index(read_at: Callable[[int, int], bytes], size: int) -> list[BundleEntry]:
    """Given ``read_at(offset, n) -> bytes`` over a bundle of ``size`` bytes, return its items' entries."""
    return list(iter_bundle_index(read_at, size))


def iter_bundle_index(read_at: Callable[[int, int], bytes], size: int) -> Iterator[BundleEntry]:
    """Given ``read_at(offset, n) -> bytes`` over a bundle of ``size`` bytes, yield its items' entries.

    The whole index is checked before the first entry is yielded (a malformed index yields
    nothing), reading it in bounded pieces, so a bundle of millions of items costs no more
    memory than a bundle of one.
    """
    if size < COUNT_SIZE:
        raise MalformedData(f"bundle of {size} bytes is shorter than its item count")
    count = _le(_read_exact(read_at, 0, COUNT_SIZE))
    # Check the count against the size before reading: a hostile count must not make us read 2**256 entries.
    index_end = COUNT_SIZE + ENTRY_SIZE * count
    if index_end > size:
        raise MalformedData(f"bundle declares {count} items but is only {size} bytes")
    end = index_end
    for first, rows in _index_rows(read_at, count):
        for i, row in enumerate(rows, first):
            end += _le(row[:ID_SIZE])
            if end > size:
                raise MalformedData(f"bundle item {i} runs past the end of the bundle")
    return _entries(read_at, count, index_end)


def _index_rows(read_at, count: int) -> Iterator[tuple[int, list[memoryview]]]:
    """Yield (index of the first, rows) for the index's 64-byte rows, ENTRIES_PER_READ at a time."""
    for first in range(0, count, ENTRIES_PER_READ):
        n = min(ENTRIES_PER_READ, count - first)
        table = memoryview(_read_exact(read_at, COUNT_SIZE + ENTRY_SIZE * first, ENTRY_SIZE * n))
        yield first, [table[i * ENTRY_SIZE : (i + 1) * ENTRY_SIZE] for i in range(n)]


def _entries(read_at, count: int, offset: int) -> Iterator[BundleEntry]:
    for _, rows in _index_rows(read_at, count):
        for row in rows:
            item_size = _le(row[:ID_SIZE])
            yield BundleEntry(b64url.encode(bytes(row[ID_SIZE:])), offset, item_size)
            offset += item_size


def bundle_header(entries: list[tuple[bytes, int]]) -> bytes:
    """Given (raw 32-byte ID, item size) pairs, return the bundle's count and index bytes."""
    parts = [len(entries).to_bytes(COUNT_SIZE, "little")]
    for raw_id, item_size in entries:
        if len(raw_id) != ID_SIZE:
            raise MalformedData(f"bundle item ID must be {ID_SIZE} bytes, got {len(raw_id)}")
        parts.append(item_size.to_bytes(ID_SIZE, "little") + raw_id)
    return b"".join(parts)


def build_bundle(items: list[bytes]) -> bytes:
    """Given whole data items' bytes, return the bundle holding them in order."""
    entries = [(b64url.parse_id(parse_header(item).id), len(item)) for item in items]
    return bundle_header(entries) + b"".join(bytes(item) for item in items)
