"""Arweave data chunking, data_root and data_path proofs (as arweave-js ``merkle.ts``).

Chunks are at most 256 KiB. When the bytes left after a full chunk would be a
tail under 32 KiB, the last two chunks are balanced instead. A size that is a
non-zero multiple of 256 KiB ends with an empty chunk (arweave-js does this and
the data roots on the network depend on it).

    leaf   id = H( H(data_hash) + H(note(max_byte_range)) )
    branch id = H( H(left.id) + H(right.id) + H(note(left.max_byte_range)) )

H is SHA-256; a note is a 32-byte big-endian offset. An odd node at the end of
a layer moves up unchanged. A proof (data_path) is, from the root down, each
branch's ``left.id + right.id + note`` followed by the leaf's ``data_hash + note``.
"""

import hashlib
from dataclasses import dataclass

from .errors import InvalidProof, MalformedData

MAX_CHUNK_SIZE = 256 * 1024
MIN_CHUNK_SIZE = 32 * 1024
NOTE_SIZE = 32
HASH_SIZE = 32
BRANCH_SIZE = HASH_SIZE * 2 + NOTE_SIZE
LEAF_SIZE = HASH_SIZE + NOTE_SIZE


def _sha256(data: bytes | memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def note(offset: int) -> bytes:
    """Given an offset, return it as a 32-byte big-endian note."""
    return offset.to_bytes(NOTE_SIZE, "big")


def note_value(buf: bytes) -> int:
    """Given a 32-byte note, return the offset it holds."""
    return int.from_bytes(buf, "big")


@dataclass(frozen=True)
class Chunk:
    """One chunk: SHA-256 of its bytes and the byte range [min, max) it covers."""

    data_hash: bytes
    min_byte_range: int
    max_byte_range: int


@dataclass(frozen=True)
class Proof:
    """The data_path of one chunk; ``offset`` is the chunk's last byte (max_byte_range - 1)."""

    offset: int
    proof: bytes


@dataclass(frozen=True)
class PathResult:
    """What a valid data_path proves: the chunk's hash and its bounds."""

    data_hash: bytes
    left_bound: int
    right_bound: int
    chunk_size: int


@dataclass(frozen=True)
class _Node:
    id: bytes
    max_byte_range: int
    # Branch fields; a leaf has data_hash and no children.
    byte_range: int = 0
    left: "_Node | None" = None
    right: "_Node | None" = None
    data_hash: bytes = b""


def chunk_ranges(size: int) -> list[tuple[int, int]]:
    """Given a data size, return the [start, end) range of every chunk, in order.

    Size 0 gives no chunks (its data_root is empty).
    """
    if size < 0:
        raise MalformedData(f"data size must not be negative, got {size}")
    if size == 0:
        return []
    ranges = []
    cursor = 0
    while size - cursor >= MAX_CHUNK_SIZE:
        rest = size - cursor
        chunk_size = MAX_CHUNK_SIZE
        tail = rest - MAX_CHUNK_SIZE
        if 0 < tail < MIN_CHUNK_SIZE:
            chunk_size = -(-rest // 2)
        ranges.append((cursor, cursor + chunk_size))
        cursor += chunk_size
    # May be empty: a multiple of 256 KiB ends with an empty chunk, as arweave-js does.
    ranges.append((cursor, size))
    return ranges


def chunks_for(data: bytes) -> list[Chunk]:
    """Given the whole data, return its chunks (hash and range each)."""
    view = memoryview(data)
    return [Chunk(_sha256(view[start:end]), start, end) for start, end in chunk_ranges(len(data))]


class DataRootBuilder:
    """Streaming data_root: ``add`` each chunk's bytes in chunk order, then ``root()``.

    Cut the data with ``chunk_ranges`` (including the empty trailing chunk).
    """

    def __init__(self):
        self.chunks: list[Chunk] = []
        self._size = 0

    def add(self, chunk_bytes: bytes | memoryview) -> Chunk:
        """Given the next chunk's bytes, record and return its Chunk."""
        return self.add_hash(_sha256(chunk_bytes), len(chunk_bytes))

    def add_hash(self, data_hash: bytes, length: int) -> Chunk:
        """Given the next chunk's SHA-256 and length (hashed elsewhere), record and return its Chunk."""
        if len(data_hash) != HASH_SIZE:
            raise MalformedData(f"chunk hash must be {HASH_SIZE} bytes, got {len(data_hash)}")
        chunk = Chunk(data_hash, self._size, self._size + length)
        self._size += length
        self.chunks.append(chunk)
        return chunk

    @property
    def size(self) -> int:
        return self._size

    def root(self) -> bytes:
        """Return the data_root of the chunks added so far."""
        return compute_root(self.chunks)


def _leaf_id(data_hash: bytes, max_byte_range: int) -> bytes:
    """Given a chunk's SHA-256 and end offset, return its leaf's node ID."""
    return _sha256(_sha256(data_hash) + _sha256(note(max_byte_range)))


def _branch_id(left_id: bytes, right_id: bytes, left_max: int) -> bytes:
    """Given two children's IDs and the left one's end offset, return their branch's node ID."""
    return _sha256(_sha256(left_id) + _sha256(right_id) + _sha256(note(left_max)))


def _leaf(chunk: Chunk) -> _Node:
    node_id = _leaf_id(chunk.data_hash, chunk.max_byte_range)
    return _Node(id=node_id, max_byte_range=chunk.max_byte_range, data_hash=chunk.data_hash)


def _branch(left: _Node, right: _Node) -> _Node:
    node_id = _branch_id(left.id, right.id, left.max_byte_range)
    return _Node(
        id=node_id,
        max_byte_range=right.max_byte_range,
        byte_range=left.max_byte_range,
        left=left,
        right=right,
    )


def _build_tree(chunks: list[Chunk]) -> _Node | None:
    layer = [_leaf(chunk) for chunk in chunks]
    if not layer:
        return None
    while len(layer) > 1:
        paired = [_branch(layer[i], layer[i + 1]) for i in range(0, len(layer) - 1, 2)]
        if len(layer) % 2:
            paired.append(layer[-1])
        layer = paired
    return layer[0]


def compute_root(chunks: list[Chunk]) -> bytes:
    """Given the chunks in order, return the 32-byte data_root (empty bytes for no chunks).

    The same node IDs as the tree of _build_tree, on (id, max_byte_range) pairs instead of tree
    nodes: a pull checks the root of ~8,400 leaves per 2.2 GB before its first chunk, and this
    takes about half the time of building the tree."""
    layer = [(_leaf_id(c.data_hash, c.max_byte_range), c.max_byte_range) for c in chunks]
    while len(layer) > 1:
        paired = [
            (_branch_id(layer[at][0], layer[at + 1][0], layer[at][1]), layer[at + 1][1])
            for at in range(0, len(layer) - 1, 2)
        ]
        if len(layer) % 2:
            paired.append(layer[-1])
        layer = paired
    return layer[0][0] if layer else b""


def build_proofs(chunks: list[Chunk]) -> list[Proof]:
    """Given the chunks in order, return one Proof per chunk, in chunk order,
    except an empty trailing chunk, whose proof arweave-js drops too (it holds no byte to
    serve or upload); ``zip(chunks, proofs)`` pairs them either way.
    """
    root = _build_tree(chunks)
    proofs: list[Proof] = []
    if root is None:
        return proofs
    # Depth-first, left before right, so proofs come out in chunk order.
    stack = [(root, b"")]
    while stack:
        node, path = stack.pop()
        if node.left is None:
            proofs.append(Proof(node.max_byte_range - 1, path + node.data_hash + note(node.max_byte_range)))
            continue
        # An inner node always has both children (_build_tree pairs them).
        assert node.right is not None
        partial = path + node.left.id + node.right.id + note(node.byte_range)
        stack.append((node.right, partial))
        stack.append((node.left, partial))
    if chunks[-1].max_byte_range == chunks[-1].min_byte_range:
        proofs.pop()
    return proofs


def validate_path(data_root: bytes, offset: int, left_bound: int, right_bound: int, path: bytes) -> PathResult:
    """Given a data_root, a byte offset in the data, the data's bounds and a data_path,
    return what the path proves about the chunk holding that offset; raise InvalidProof otherwise.

    Follows arweave-js ``validatePath`` (offsets past the end clamp to the last byte,
    negative offsets to the first) plus the Arweave node's use of the leaf's end offset.
    """
    if right_bound <= 0:
        raise InvalidProof(f"right bound must be positive, got {right_bound}")
    if offset >= right_bound:
        return validate_path(data_root, right_bound - 1, 0, right_bound, path)
    if offset < 0:
        return validate_path(data_root, 0, 0, right_bound, path)
    node_id = data_root
    view = memoryview(path)
    while len(view) != LEAF_SIZE:
        # Each step must consume a whole branch; a short or ragged path proves nothing.
        if len(view) < BRANCH_SIZE + LEAF_SIZE:
            raise InvalidProof(f"data_path has a malformed length ({len(path)} bytes)")
        left_id = bytes(view[:HASH_SIZE])
        right_id = bytes(view[HASH_SIZE : 2 * HASH_SIZE])
        partition_note = bytes(view[2 * HASH_SIZE : BRANCH_SIZE])
        expected = _sha256(_sha256(left_id) + _sha256(right_id) + _sha256(partition_note))
        if expected != node_id:
            raise InvalidProof("data_path branch does not hash to the expected node")
        partition = note_value(partition_note)
        if offset < partition:
            node_id = left_id
            right_bound = min(right_bound, partition)
        else:
            node_id = right_id
            left_bound = max(left_bound, partition)
        view = view[BRANCH_SIZE:]
    data_hash = bytes(view[:HASH_SIZE])
    end_note = bytes(view[HASH_SIZE:])
    if _sha256(_sha256(data_hash) + _sha256(end_note)) != node_id:
        raise InvalidProof("data_path leaf does not hash to the expected node")
    # As the Arweave node does: the leaf's own end offset can only narrow the chunk,
    # never widen it past the bounds the branches proved (arweave-js ignores it).
    right_bound = max(min(right_bound, note_value(end_note)), left_bound + 1)
    return PathResult(data_hash, left_bound, right_bound, right_bound - left_bound)
