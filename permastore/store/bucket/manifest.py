"""The bucket object of one signed header: what another node needs to index the object.

JSON, one object: {"v": 2, "id", "kind": "tx" | "item", "raw_header" (b64url: the binary
ANS-104 header, or the tx JSON as stored), "data_size", "spans": [span name hex, ...],
"chunks": [[offset, size, BLAKE3 hex, SHA-256 hex or null, span index or null, offset in
the span or null], ...]}; a chunk with no span is under chunks/<BLAKE3> (layout.py);
and "pending": true for an L1 tx header whose data is not here yet (chunks empty; a second
manifest with the chunks follows once the data is whole).
Version 1 (no "spans", four fields a chunk, every chunk under chunks/) is still read.
Nothing in it is trusted: a node that reads it checks the
signature of raw_header, that the chunks cover data_size in Arweave's chunking, that their
SHA-256s rebuild a tx's data_root, and every chunk's bytes against BLAKE3 (and SHA-256) as
they are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from permastore.protocol import b64url
from permastore.protocol.errors import MalformedData
from permastore.protocol.merkle import chunk_ranges

VERSION = 2
READABLE = (1, 2)
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
    # Parallel to chunks: (span name, offset in the span), or None for a chunk under chunks/.
    locations: list[tuple[bytes, int] | None] = field(default_factory=list)

    def location(self, index: int) -> tuple[bytes, int] | None:
        """Where chunk number index is in the bucket: (span, offset), or None (its own object)."""
        return self.locations[index] if index < len(self.locations) else None

    def encode(self) -> bytes:
        spans: dict[bytes, int] = {}
        entries = []
        for index, (o, s, b, h) in enumerate(self.chunks):
            where = self.location(index)
            span = None if where is None else spans.setdefault(where[0], len(spans))
            entries.append([o, s, b.hex(), h.hex() if h else None, span, None if where is None else where[1]])
        body = {
            "v": VERSION,
            "id": self.id,
            "kind": self.kind,
            "raw_header": b64url.encode(self.raw_header),
            "data_size": self.data_size,
            "spans": [span.hex() for span in spans],
            "chunks": entries,
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
        if body.get("v") not in READABLE or body.get("kind") not in ("tx", "item"):
            raise ValueError("unknown version or kind")
        size = body["data_size"]
        if not isinstance(size, int) or size < 0:
            raise ValueError("bad data_size")
        entries = body["chunks"] if body["v"] == 2 else [[*entry, None, None] for entry in body["chunks"]]
        spans = [bytes.fromhex(span) for span in body.get("spans", ())]
        chunks = [(int(o), int(s), bytes.fromhex(b), bytes.fromhex(h) if h else None) for o, s, b, h, _, _ in entries]
        locations = [_location(spans, span, at) for *_, span, at in entries]
        pending = body.get("pending", False) is True
        manifest = Manifest(str(body["id"]), body["kind"], b64url.decode(body["raw_header"]), size, chunks, pending, locations=locations)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
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
    if any(where is not None and len(where[0]) != 32 for where in manifest.locations):
        raise MalformedData(f"header object of {manifest.id}: a span name is not 32 bytes")
    return manifest


def span_rows(manifest: Manifest) -> list[tuple[bytes, bytes, int]]:
    """(chunk address, span, offset) of every chunk the manifest places in a span."""
    return [(c[2], *where) for c, where in zip(manifest.chunks, manifest.locations) if where is not None]


def _location(spans: list[bytes], span, at) -> tuple[bytes, int] | None:
    if span is None:
        return None
    if not isinstance(span, int) or not isinstance(at, int) or span < 0 or at < 0:
        raise ValueError("bad span reference")
    return spans[span], at
