"""The streaming chunker cuts exactly as merkle.chunk_ranges, whatever the block sizes."""

from hypothesis import given, settings
from hypothesis import strategies as st

from permastore.protocol.merkle import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, chunk_ranges
from permastore.store.chunker import arweave_chunks

EDGE_SIZES = [
    0, 1, MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE - 1, MAX_CHUNK_SIZE, MAX_CHUNK_SIZE + 1,
    MAX_CHUNK_SIZE + MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + MIN_CHUNK_SIZE, 2 * MAX_CHUNK_SIZE,
    3 * MAX_CHUNK_SIZE + 7, 8 * 1024 * 1024, 8 * 1024 * 1024 + MIN_CHUNK_SIZE - 1,
]  # fmt: skip


def cut(data: bytes, block: int) -> list[bytes]:
    blocks = [data[i : i + block] for i in range(0, len(data), block)]
    return [bytes(chunk) for chunk in arweave_chunks(blocks)]


def test_edge_sizes_match_arweave_chunking_for_several_block_sizes():
    for size in EDGE_SIZES:
        data = bytes(range(256)) * (size // 256) + bytes(size % 256)
        expected = [data[start:end] for start, end in chunk_ranges(size)]
        for block in (4096, 100_000, MAX_CHUNK_SIZE, 8 * 1024 * 1024):
            assert cut(data, block) == expected, (size, block)


def test_multiple_of_chunk_size_ends_with_empty_chunk():
    chunks = cut(bytes(2 * MAX_CHUNK_SIZE), 65536)
    assert [len(c) for c in chunks] == [MAX_CHUNK_SIZE, MAX_CHUNK_SIZE, 0]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 3 * MAX_CHUNK_SIZE), block=st.integers(1, 600_000))
def test_any_size_any_block_size(size, block):
    data = bytes((i * 7) & 0xFF for i in range(size))
    assert cut(data, block) == [data[s:e] for s, e in chunk_ranges(size)]
