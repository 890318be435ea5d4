"""PeerClient: one peer (a permastore node, an Arweave node, an ar.io gateway) over its HTTP API.

Besides what ``UpstreamSource`` asks (headers, bundle ancestry, whole data), a peer is
asked chunk by chunk, with the standard routes any Arweave node or ar.io gateway serves:
- ``GET /tx/{id}/offset``: where the tx's data ends in that peer's weave (offsets differ
  between peers), and its size;
- ``GET /chunk/{offset}``: the chunk holding a weave offset with its ``data_path``;
and, between permastore nodes, the faster path:
- ``GET /leaves/{id}``: the tx's whole leaf list in one answer (40 bytes a chunk: SHA-256
  and end offset; it proves itself by rebuilding the signed data_root);
- ``GET /raw/{id}`` with ``Range``: raw bytes in large chunk-aligned pieces, each chunk
  checked against its proven leaf as it arrives (any gateway with Range can serve these;
  read by ``RangeReader`` straight into the caller's buffer).
Nothing returned here is verified: ``permastore.sources.proofs`` checks it all.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from permastore.protocol import b64url
from permastore.protocol.errors import ProtocolError
from permastore.sources.base import UpstreamError
from permastore.sources.proofs import LEAF_RECORD
from permastore.sources.range_reader import RangeReader
from permastore.sources.upstream import UpstreamSource
from permastore.store import chunk_layout
from permastore.store.errors import NotFound

MAX_CHUNK_JSON = 1024 * 1024  # 256 KiB of base64url plus a data_path and tx_path
MAX_OFFSET_JSON = 4096
MAX_PEERS_JSON = 256 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_HELD_SPAN = re.compile(r"(\d{1,20})-(\d{1,20})")
MAX_HELD_SPANS = 4096


@dataclass(frozen=True)
class LeafAnswer:
    """A peer's ``/leaves/{id}`` answer: the leaf list, and the byte spans [start, end) it holds (None: all)."""

    blob: bytes
    held: list[tuple[int, int]] | None = None


def parse_held(text: str, data_size: int) -> list[tuple[int, int]]:
    """Given an ``X-Permastore-Held`` value ("first-last,..."), return its spans [start, end) within
    data_size; what does not parse is left out (the peer is then asked for less, never more)."""
    spans = []
    for part in text.split(",")[:MAX_HELD_SPANS]:
        match = _HELD_SPAN.fullmatch(part.strip())
        if match:
            start, end = int(match.group(1)), min(int(match.group(2)) + 1, data_size)
            if start < end:
                spans.append((start, end))
    return spans


class PeerClient(UpstreamSource):
    """Given a base URL, ask one peer for headers, chunks, leaf lists and raw ranges."""


    def __repr__(self) -> str:
        return f"PeerClient({self.base_url!r})"

    def tx_offset(self, id: str) -> tuple[int, int] | None:
        """Given a tx ID, return (end offset in this peer's weave, data size), or None when it has none."""
        b64url.parse_id(id)
        response = self._get_small(f"/tx/{id}/offset", MAX_OFFSET_JSON)
        if response is None or response.status_code != 200:
            return None
        try:
            doc = json.loads(response.content)
            offset, size = int(str(doc["offset"])), int(str(doc["size"]))
        except (ValueError, KeyError, TypeError):
            return None  # a peer answering another shape there (a tx JSON): no offsets from it
        if offset < 0 or size <= 0 or offset + 1 < size:
            return None
        return offset, size

    def chunk(self, offset: int) -> tuple[bytes, bytes]:
        """Given a weave offset, return (chunk bytes, data_path) from ``/chunk/{offset}`` (unverified)."""
        response = self._get_small(f"/chunk/{offset}", MAX_CHUNK_JSON)
        if response is None or response.status_code == 204:  # arlocal: 204 for chunks it does not serve
            raise NotFound(str(offset), f"{self.base_url}: chunk at")
        if response.status_code != 200:
            raise UpstreamError(f"{self.base_url}/chunk/{offset}: HTTP {response.status_code}")
        try:
            doc = json.loads(response.content)
            return b64url.decode(doc["chunk"]), b64url.decode(doc["data_path"])
        except (ValueError, KeyError, TypeError, ProtocolError) as exc:
            raise UpstreamError(f"{self.base_url}/chunk/{offset}: not a chunk answer: {exc}") from None

    def leaves(self, id: str, data_size: int) -> LeafAnswer | None:
        """Given a tx ID and its data_size, return this peer's leaf list (unverified) and, for a peer
        holding part of the tx, the byte spans it holds; None when it has no leaf list."""
        b64url.parse_id(id)
        limit = chunk_layout.chunk_count(data_size) * LEAF_RECORD.size
        try:
            response = self._get_small(f"/leaves/{id}", limit)
        except UpstreamError:
            return None  # longer than a leaf list can be: not one
        if response is None or response.status_code != 200:
            return None
        held = response.headers.get("x-permastore-held")
        return LeafAnswer(response.content, None if held is None else parse_held(held, data_size))

    @property
    def ranges(self) -> RangeReader:
        """This peer's RangeReader (raw bytes by Range into buffers, one connection per thread)."""
        reader = self.__dict__.get("_ranges")
        if reader is None:
            reader = self.__dict__["_ranges"] = RangeReader(self.base_url, self.limits)
        return reader

    def read_into(self, id: str, start: int, view: memoryview, deadline: float) -> Iterator[int]:
        """Given an ID, an offset and a buffer, fill it with the object's bytes from there (see RangeReader)."""
        return self.ranges.read_into(id, start, view, deadline)

    def read_range(self, id: str, start: int, end: int, deadline: float) -> bytes:
        """Given an ID and a span, return its raw bytes (unverified)."""
        buffer = bytearray(end - start)
        for _ in self.read_into(id, start, memoryview(buffer), deadline):
            pass
        return bytes(buffer)

    def declared_size(self, id: str) -> int | None:
        """Given an ID, return the data size the peer declares for ``/raw/{id}`` (Content-Range total), or None."""
        deadline = time.monotonic() + self.limits.header_deadline_s
        for path in (f"/raw/{id}", f"/{id}") if self.ranges.raw_route else (f"/{id}",):
            try:
                request = self.client.build_request("GET", self.base_url + path, headers={"Range": "bytes=0-0"})
                response = self.client.send(request, stream=True)
            except httpx.HTTPError:
                return None
            try:
                if response.status_code in (400, 404) and path.startswith("/raw/"):
                    continue
                if time.monotonic() > deadline:
                    return None
                if response.status_code == 200:  # Range ignored: the whole answer's length
                    length = response.headers.get("content-length", "")
                    return int(length) if length.isdigit() else None
                match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
                if response.status_code != 206 or not match or match.group(3) == "*":
                    return None
                return int(match.group(3))
            finally:
                response.close()
        return None

    def peer_list(self) -> list[str]:
        """Return the peers this peer lists on ``GET /peers`` (Arweave's "host:port", or URLs), unchecked."""
        try:
            response = self._get_small("/peers", MAX_PEERS_JSON)
        except UpstreamError:
            return []
        if response is None or response.status_code != 200:
            return []
        try:
            listed = json.loads(response.content)
        except ValueError:
            return []
        return [entry for entry in listed if isinstance(entry, str)] if isinstance(listed, list) else []
