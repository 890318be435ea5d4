"""fsck's read-back of the bucket: each span's chunks with one ranged GET, a few spans at once.

One GET per chunk costs SeaweedFS about as much as 100 KB of data per request (transfer.py),
so fsck reads a span's chunks together, as reads do. Every chunk is still judged alone (its
size, the SHA-256 the index holds, its BLAKE3): one bad chunk in a span is reported as that
chunk. A span that cannot be read whole (missing, short, the bucket failing) is read again
chunk by chunk, so each chunk gets its own reason.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import deque
from collections.abc import Iterator

import blake3

from permastore.store.bucket.transfer import SPAN_CHUNKS

SPANS_AT_ONCE = 4  # GETs in flight (16 MiB held at most)

# Every chunk the bucket should hold, a span's chunks together in offset order.
CHECK_ROWS_SQL = (
    "SELECT b.hash, k.size, k.sha256, s.span, s.offset FROM bucket_chunks b JOIN chunks k ON k.hash = b.hash"
    " LEFT JOIN bucket_spans s ON s.hash = b.hash ORDER BY s.span, s.offset"
)


def read_back(bucket, rows: list[sqlite3.Row], executor) -> Iterator[tuple[sqlite3.Row, OSError | None]]:
    """Given the bucket, CHECK_ROWS_SQL's rows and an executor for the GETs, yield (row, None when
    the bucket holds that chunk intact, else the OSError why not) for each, in order, with up to
    SPANS_AT_ONCE groups being read at once."""
    window: deque = deque()
    for group in _groups(rows):
        window.append((group, executor.submit(_read_group, bucket, group)))
        if len(window) >= SPANS_AT_ONCE:
            yield from _results(*window.popleft())
    while window:
        yield from _results(*window.popleft())


def _results(group: list[sqlite3.Row], future) -> Iterator[tuple[sqlite3.Row, OSError | None]]:
    yield from zip(group, future.result())


def _groups(rows: list[sqlite3.Row]) -> Iterator[list[sqlite3.Row]]:
    """Rows of one span (at most SPAN_CHUNKS), or one row of a chunk stored as chunks/<address>."""
    group: list[sqlite3.Row] = []
    for row in rows:
        if group and row["span"] is not None and row["span"] == group[0]["span"] and len(group) < SPAN_CHUNKS:
            group.append(row)
            continue
        if group:
            yield group
        group = [row]
    if group:
        yield group


def _read_group(bucket, group: list) -> list[OSError | None]:
    """On a read thread: for each row, None when its chunk is intact, or the OSError saying what is wrong."""
    if group[0]["span"] is not None and len(group) > 1:
        first, last = group[0], group[-1]
        try:
            data = bucket.read_span(bytes(first["span"]), first["offset"], last["offset"] + last["size"])
        except OSError:
            pass  # read chunk by chunk below: each one's own reason
        else:
            start = first["offset"]
            return [_verified(row, data[row["offset"] - start : row["offset"] - start + row["size"]]) for row in group]
    return [_loaded(bucket, row) for row in group]


def _loaded(bucket, row) -> OSError | None:
    try:
        return _verified(row, bucket.load_chunk(bytes(row["hash"]), row["size"]), sha256_checked=True)
    except OSError as exc:
        return exc


def _verified(row, data, sha256_checked: bool = False) -> OSError | None:
    """Given a row and the bytes the bucket gave for it, return None if they are its chunk, else why not."""
    if len(data) != row["size"]:
        return OSError(f"{len(data)} bytes, not {row['size']}")
    if not sha256_checked and row["sha256"] is not None and hashlib.sha256(data).digest() != bytes(row["sha256"]):
        return OSError("does not match its SHA-256")
    if blake3.blake3(data).digest() != bytes(row["hash"]):
        return OSError("BLAKE3 mismatch")
    return None
