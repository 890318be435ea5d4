"""Key names in the bucket.

    spans/<blake3 hex>                           raw bytes of up to 16 consecutive new chunks of
                                                 one put, back to back (4 MiB); named by the BLAKE3
                                                 of their chunk addresses in order, so the name
                                                 fixes the bytes; manifests give each chunk's span
                                                 and offset (read with a ranged GET)
    chunks/<blake3 hex>                          raw bytes of one chunk: the first layout, still
                                                 read for chunks a manifest gives no span
    headers/<time: 16 hex digits, µs>-<ID>       one per signed header (manifest.py): keys sort
                                                 by publication time, so "what is new since I
                                                 last looked" is one LIST with StartAfter
"""

from __future__ import annotations

CHUNKS = "chunks/"
SPANS = "spans/"
HEADERS = "headers/"
IDENTITY = "permastore-bucket"
TIME_DIGITS = 16


def identity_key(prefix: str) -> str:
    """The key of the bucket's identity marker."""
    return f"{prefix}{IDENTITY}"


def chunk_key(prefix: str, address: bytes) -> str:
    """Given a chunk's BLAKE3 address, return its key."""
    return f"{prefix}{CHUNKS}{address.hex()}"


def span_key(prefix: str, span: bytes) -> str:
    """Given a span's name (the BLAKE3 of its chunk addresses), return its key."""
    return f"{prefix}{SPANS}{span.hex()}"


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
