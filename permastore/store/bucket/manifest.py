"""The bucket object of one signed header: what another node needs to index the object.

JSON, one object: {"v": 1, "id", "kind": "tx" | "item", "raw_header" (b64url: the binary
ANS-104 header, or the tx JSON as stored), "data_size", "chunks": [[offset, size, BLAKE3
hex, SHA-256 hex or null], ...]}, and "pending": true for an L1 tx header whose data is not
here yet (chunks empty; a second manifest with the chunks follows once the data is whole). Nothing in it is trusted: a node that reads it checks the
signature of raw_header, that the chunks cover data_size in Arweave's chunking, that their
SHA-256s rebuild a tx's data_root, and every chunk's bytes against BLAKE3 (and SHA-256) as
they are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from permastore.protocol import b64url
from permastore.protocol.errors import MalformedData
from permastore.protocol.merkle import chunk_ranges

VERSION = 1
# A manifest lists one entry per 256 KiB chunk: 64 GiB (the default data limit) is ~40 MB of JSON.
MAX_MANIFEST = 64 * 1024 * 1024


@dataclass
class Manifest:
    """One object's signed header and chunk list, as published into the bucket."""

    id: str
    kind: str
    raw_header: bytes
    data_size: int
    chunks: list[tuple[int, int, bytes, bytes | None]]  # (offset, size, blake3, sha256)
    pending: bool = False  # a tx header published before its data (chunks empty)

    def encode(self) -> bytes:
        body = {
            "v": VERSION,
            "id": self.id,
            "kind": self.kind,
            "raw_header": b64url.encode(self.raw_header),
            "data_size": self.data_size,
            "chunks": [[o, s, b.hex(), h.hex() if h else None] for o, s, b, h in self.chunks],
        }
        if self.pending:
            body["pending"] = True
        return json.dumps(body, separators=(",", ":")).encode()


def decode(data: bytes) -> Manifest:
    """Given a bucket object's bytes, return its Manifest; MalformedData when it is not a valid one."""
    if len(data) > MAX_MANIFEST:
        raise MalformedData(f"header object is {len(data)} bytes, more than {MAX_MANIFEST}")
    try:
        body = json.loads(data)
        if body.get("v") != VERSION or body.get("kind") not in ("tx", "item"):
            raise ValueError("unknown version or kind")
        size = body["data_size"]
        if not isinstance(size, int) or size < 0:
            raise ValueError("bad data_size")
        chunks = [(int(o), int(s), bytes.fromhex(b), bytes.fromhex(h) if h else None) for o, s, b, h in body["chunks"]]
        pending = body.get("pending", False) is True
        manifest = Manifest(str(body["id"]), body["kind"], b64url.decode(body["raw_header"]), size, chunks, pending)
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedData(f"header object is not a valid manifest: {exc}") from None
    if manifest.pending:
        if manifest.kind != "tx" or manifest.chunks:
            raise MalformedData(f"header object of {manifest.id}: only a tx header, without chunks, is pending")
        return manifest
    expected = [(start, end - start) for start, end in chunk_ranges(size) if end > start]
    if [(o, s) for o, s, _, _ in manifest.chunks] != expected:
        raise MalformedData(f"header object of {manifest.id}: chunk list does not cover its {size} bytes")
    if any(len(b) != 32 or (h is not None and len(h) != 32) for _, _, b, h in manifest.chunks):
        raise MalformedData(f"header object of {manifest.id}: a chunk hash is not 32 bytes")
    return manifest
