"""Proof checking for fetched bytes: leaf lists, data_paths, and whole-object checks.

Nothing a peer sends is written before it is proven:
- a leaf list (each chunk's SHA-256 and range, from a permastore peer's ``/leaves/{id}``)
  counts only when it rebuilds the tx's signed data_root; each chunk is then checked
  against its leaf's SHA-256 as it arrives;
- a chunk from ``/chunk/{offset}`` counts when its data_path leads to the signed data_root,
  its bounds are the expected chunk and its bytes hash to the proven leaf;
- an object with no per-chunk proof (an item with no L1 ancestor, a tx from peers without
  chunk routes) is checked whole when complete: ``ItemCheck`` (its signature over the
  deep-hash of its data) or ``root_of`` (its data_root).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from permastore.protocol import ans104, merkle
from permastore.protocol.deephash import BlobHasher
from permastore.protocol.errors import InvalidProof
from permastore.store import chunk_layout

LEAF_RECORD = struct.Struct(">32sQ")  # a leaf on the wire: SHA-256, then the chunk's end offset
_EMPTY_SHA256 = hashlib.sha256(b"").digest()


@dataclass(frozen=True)
class Leaf:
    """One proven chunk of a tx: its bytes [start, end) hash to sha256."""

    start: int
    end: int
    sha256: bytes


def encode_leaves(chunks) -> bytes:
    """Given a tx's non-empty chunks (merkle.Chunk, in order), return the ``/leaves/{id}`` body."""
    return b"".join(LEAF_RECORD.pack(c.data_hash, c.max_byte_range) for c in chunks)


def decode_leaves(blob: bytes, data_size: int) -> list[Leaf]:
    """Given a ``/leaves/{id}`` body and the tx's data_size, return its leaves; InvalidProof if malformed.

    The ranges must be exactly Arweave's chunking of data_size (checked without trusting the peer).
    """
    count = chunk_layout.chunk_count(data_size)
    if len(blob) != count * LEAF_RECORD.size:
        raise InvalidProof(f"leaf list is {len(blob)} bytes, {count} leaves expected")
    leaves, start = [], 0
    for index, (sha, end) in enumerate(LEAF_RECORD.iter_unpack(blob)):
        if (start, end) != chunk_layout.chunk_at(data_size, index):
            raise InvalidProof(f"leaf {index} covers {start}-{end}, not the chunk Arweave cuts there")
        leaves.append(Leaf(start, end, sha))
        start = end
    return leaves


def root_of(leaves: list[Leaf], data_size: int) -> bytes:
    """Given a tx's leaves in order, return the data_root they rebuild."""
    chunks = [merkle.Chunk(leaf.sha256, leaf.start, leaf.end) for leaf in leaves]
    if data_size and data_size % merkle.MAX_CHUNK_SIZE == 0:
        chunks.append(merkle.Chunk(_EMPTY_SHA256, data_size, data_size))  # as arweave-js cuts it
    return merkle.compute_root(chunks)


def check_leaves(blob: bytes, data_root: bytes, data_size: int) -> list[Leaf]:
    """Given a leaf list from a peer, return its leaves when they rebuild the signed data_root."""
    leaves = decode_leaves(blob, data_size)
    if root_of(leaves, data_size) != data_root:
        raise InvalidProof("leaf list does not rebuild the tx's data_root")
    return leaves


def check_leaf(leaf: Leaf, data) -> bytes:
    """Given a proven leaf and the bytes a peer sent for it, return their SHA-256 or raise InvalidProof."""
    if len(data) != leaf.end - leaf.start:
        raise InvalidProof(f"chunk at {leaf.start} is {len(data)} bytes, {leaf.end - leaf.start} expected")
    sha = hashlib.sha256(data).digest()
    if sha != leaf.sha256:
        raise InvalidProof(f"chunk at {leaf.start} does not hash to its proven leaf")
    return sha


def check_chunk(data_root: bytes, data_size: int, start: int, end: int, chunk: bytes, data_path: bytes) -> Leaf:
    """Given a chunk and its data_path for [start, end) of a tx, return its proven Leaf or raise InvalidProof."""
    proven = merkle.validate_path(data_root, end - 1, 0, data_size, data_path)
    if (proven.left_bound, proven.right_bound) != (start, end):
        raise InvalidProof(f"data_path proves {proven.left_bound}-{proven.right_bound}, not {start}-{end}")
    leaf = Leaf(start, end, proven.data_hash)
    check_leaf(leaf, chunk)
    return leaf


class ItemCheck:
    """Checks a data item whole: ``update`` with its data in order, then ``finish`` verifies the signature."""

    def __init__(self, raw_header: bytes):
        self.header = ans104.parse_header(raw_header)
        self.hasher = BlobHasher()

    def update(self, data) -> None:
        self.hasher.update(data)

    def finish(self) -> None:
        ans104.verify_header(self.header, self.hasher.digest())  # raises InvalidSignature
