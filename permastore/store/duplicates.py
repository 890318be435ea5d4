"""Find an upload this node already signed: the same bytes under the same tags.

`permastore put FILE` twice should not sign two objects for one file (as `model add`
does not). The index already holds what it takes: every stored object's chunk list
(BLAKE3 of each Arweave chunk, `object_chunks`, indexed by hash) and its signed tags.
So a file is looked up by the hash of its first chunk (one indexed read, 256 KiB of the
file hashed); only when an object of this wallet with that first chunk and that size
exists is the rest of the file hashed and compared, chunk by chunk, then the tags.
"""

from __future__ import annotations

import os
from pathlib import Path

import blake3

from permastore.protocol.merkle import chunk_ranges
from permastore.protocol.tags import Tag
from permastore.protocol.wallet import address_of

MAX_CANDIDATES = 64  # objects sharing a first chunk and size compared in full, at most
READ_BLOCK = 1024 * 1024

FIRST_CHUNK_MATCHES = """
SELECT o.seq, o.id FROM object_chunks c JOIN objects o ON o.seq = c.seq
WHERE c.hash = ? AND c.idx = 0 AND o.owner_address = ? AND o.data_size = ? AND o.data_complete = 1
ORDER BY o.seq LIMIT ?
"""
EMPTY_MATCHES = """
SELECT seq, id FROM objects
WHERE owner_address = ? AND data_size = 0 AND data_complete = 1 ORDER BY seq LIMIT ?
"""


def _chunk_hashes(path: Path, ranges, limit: int | None = None) -> list[bytes]:
    """Given a file and its Arweave chunk ranges, return the BLAKE3 of each non-empty chunk (the first `limit`)."""
    hashes = []
    with open(path, "rb") as stream:
        for start, end in ranges[:limit]:
            if end == start:
                continue  # the empty trailing chunk is not stored
            stream.seek(start)
            hasher = blake3.blake3()
            left = end - start
            while left:
                block = stream.read(min(READ_BLOCK, left))
                if not block:
                    raise OSError(f"{path} changed while being read")
                hasher.update(block)
                left -= len(block)
            hashes.append(hasher.digest())
    return hashes


def _same_tags(conn, seq: int, tags: list[Tag]) -> bool:
    rows = conn.execute("SELECT name, value FROM tags WHERE seq = ? ORDER BY idx", (seq,)).fetchall()
    return [(bytes(name), bytes(value)) for name, value in rows] == [(tag.name, tag.value) for tag in tags]


def _same_chunks(conn, seq: int, hashes: list[bytes]) -> bool:
    rows = conn.execute("SELECT hash FROM object_chunks WHERE seq = ? ORDER BY idx", (seq,)).fetchall()
    return [bytes(row[0]) for row in rows] == hashes


def find_same_upload(store, path, tags) -> str | None:
    """Given a store, a file and the exact tags a put would sign, return the ID of a complete
    object the store's wallet already signed over the same bytes and tags, or None."""
    path = Path(path)
    tags = list(tags)
    size = os.path.getsize(path)
    owner_address = address_of(store.signer.owner)
    conn = store.db
    if size == 0:
        candidates = conn.execute(EMPTY_MATCHES, (owner_address, MAX_CANDIDATES)).fetchall()
        hashes: list[bytes] = []
    else:
        ranges = chunk_ranges(size)
        first = _chunk_hashes(path, ranges, limit=1)
        candidates = conn.execute(FIRST_CHUNK_MATCHES, (first[0], owner_address, size, MAX_CANDIDATES)).fetchall()
        if not candidates:
            return None  # the common case: only the first chunk was read
        hashes = first + _chunk_hashes(path, ranges[1:]) if len(ranges) > 1 else first
    for seq, object_id in candidates:
        if _same_chunks(conn, seq, hashes) and _same_tags(conn, seq, tags):
            return object_id
    return None
