"""How a chunk is kept on disk: raw, or zstd when that saves real space."""

from __future__ import annotations

import threading

import zstandard

RAW = 0
ZSTD = 1
ZSTD_LEVEL = 3
# Compress only when it saves at least 10%: weights and media barely compress.
MIN_SAVING = 0.10
# Chunks stored in at most this many bytes are kept in the SQLite index, not in a pack:
# a small put then costs one fsync (the WAL's) instead of two (pack, then WAL).
INLINE_LIMIT = 8 * 1024

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_local, "compressor"):
        _local.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.compressor


def encode(chunk) -> tuple[int, bytes]:
    """Given a chunk's raw bytes, return (codec, stored bytes): zstd only when it pays."""
    if len(chunk) < 64:
        return RAW, bytes(chunk)
    packed = _compressor().compress(chunk)
    if len(packed) <= len(chunk) * (1 - MIN_SAVING):
        return ZSTD, packed
    return RAW, bytes(chunk)


def decode(codec: int, stored: bytes, size: int) -> bytes:
    """Given the codec, the stored bytes and the raw size, return the raw bytes."""
    if codec == RAW:
        return stored
    if codec == ZSTD:
        _compressor()
        return _local.decompressor.decompress(stored, max_output_size=size)
    raise ValueError(f"unknown chunk codec {codec}")
