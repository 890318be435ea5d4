"""Key names in the bucket.

    chunks/<blake3 hex>                          raw bytes of one chunk (content-addressed: one
                                                 copy whichever node or object wrote it)
    headers/<time: 16 hex digits, µs>-<ID>       one per signed header (manifest.py): keys sort
                                                 by publication time, so "what is new since I
                                                 last looked" is one LIST with StartAfter
"""

from __future__ import annotations

CHUNKS = "chunks/"
HEADERS = "headers/"
IDENTITY = "permastore-bucket"
TIME_DIGITS = 16


def identity_key(prefix: str) -> str:
    """The key of the bucket's identity marker."""
    return f"{prefix}{IDENTITY}"


def chunk_key(prefix: str, address: bytes) -> str:
    """Given a chunk's BLAKE3 address, return its key."""
    return f"{prefix}{CHUNKS}{address.hex()}"


def header_key(prefix: str, micros: int, id: str) -> str:
    """Given a publication time in microseconds and an ID, return the header's key."""
    return f"{prefix}{HEADERS}{micros:0{TIME_DIGITS}x}-{id}"


def header_marker(prefix: str, micros: int) -> str:
    """The key every header published at or after micros sorts after."""
    return f"{prefix}{HEADERS}{max(micros, 0):0{TIME_DIGITS}x}"


def parse_header_key(prefix: str, key: str) -> tuple[int, str] | None:
    """Given a key under headers/, return (time in µs, ID), or None when it is not one of ours."""
    name = key[len(prefix) + len(HEADERS):]
    stamp, dash, id = name.partition("-")
    if not dash or len(stamp) != TIME_DIGITS or len(id) != 43:
        return None
    try:
        return int(stamp, 16), id
    except ValueError:
        return None
