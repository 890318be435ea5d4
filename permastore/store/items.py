"""Plain uploads signed by the node wallet, and signed data items as given.

A plain upload of more than one chunk becomes a format-2 L1 tx signed by the node wallet
(data_root over its chunks, a data_path per chunk, a weave offset, mined into the next
block), so any peer can fetch it chunk by chunk, each chunk proven; one chunk or less
(records, small notes) is wrapped in an ANS-104 item, as is anything with a target or
anchor. Either way the data streams in first (hashed on the way), then the signature is
made or checked, then everything is committed at once.
"""

from __future__ import annotations

from permastore.protocol import ans104, avro_tags
from permastore.protocol.errors import MalformedData
from permastore.protocol.merkle import MAX_CHUNK_SIZE
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign
from permastore.store.index import b64_or_empty, content_type_of
from permastore.store.ingest import PrefixedStream, as_stream
from permastore.store.records import ObjectInfo

# An ANS-104 header is at most ~0.6 MB (128 tags of 1 KiB + 3 KiB); refuse anything longer.
MAX_ITEM_HEADER = 1024 * 1024
HEADER_READ = 64 * 1024


class Items:
    """Store mixin: ``put_data`` and ``put_item``."""

    def put_data(
        self, stream, tags=(), content_type: str | None = None, target=None, anchor=None, progress=None
    ) -> ObjectInfo:
        """Given plain data, sign it with the node wallet (an L1 tx past one chunk, else an item); return its info."""
        tags = list(tags)
        if content_type and content_type_of(tags) is None:
            tags.append(Tag(b"Content-Type", content_type.encode("utf-8")))
        _check_tags(tags)
        stream = as_stream(stream)
        head = _read_at_most(stream, MAX_CHUNK_SIZE + 1)
        stream = PrefixedStream(head, stream)
        if len(head) > MAX_CHUNK_SIZE and target is None and anchor is None:
            return self._put_data_as_tx(stream, tags, progress)
        ingested = self._ingest(stream, want_deep_hash=True, want_sha256=False, progress=progress)
        try:
            header_bytes = ans104.build_header(self.signer, ingested.blob_hash, tags, target=target, anchor=anchor)
            header = ans104.parse_header(header_bytes)
        except BaseException:
            ingested.discard()
            raise
        return self._commit(ingested, item_row(header, header_bytes, ingested.size), header.tags)

    def _put_data_as_tx(self, stream, tags, progress) -> ObjectInfo:
        """Given plain data of more than one chunk, store it as a format-2 L1 tx signed by the node wallet."""
        from permastore.store.transactions import tx_row

        ingested = self._ingest(stream, want_deep_hash=False, want_sha256=True, progress=progress)
        try:
            unsigned = Transaction(format=2, tags=tags, data_size=ingested.size, data_root=ingested.data_root)
            tx = sign(unsigned, self.signer)
        except BaseException:
            ingested.discard()
            raise
        return self._commit_tx(ingested, tx_row(tx), tx)

    def put_item(self, stream, progress=None) -> ObjectInfo:
        """Given a signed binary ANS-104 item (bytes or stream), verify and store it; return its info.

        Storing the same item again returns the stored one, once the copy verified; a copy
        that does not verify is refused even when its ID is stored (InvalidSignature), and
        one that verifies but differs from the stored item is a Conflict.
        """
        stream = as_stream(stream)
        header_bytes, rest = _read_item_header(stream)
        header = ans104.parse_header(header_bytes)
        existing = self.info(header.id)
        if existing is not None:
            return self._check_known_item(existing, header, header_bytes, PrefixedStream(rest, stream), progress)
        ingested = self._ingest(PrefixedStream(rest, stream), want_deep_hash=True, want_sha256=False, progress=progress)
        try:
            # Security: the signature covers the data's deep-hash; nothing is indexed unless it verifies.
            ans104.verify_header(header, ingested.blob_hash)
        except BaseException:
            ingested.discard()
            raise
        return self._commit(ingested, item_row(header, header_bytes, ingested.size), header.tags)


def _read_item_header(stream) -> tuple[bytes, bytes]:
    """Given a stream at an ANS-104 item, return (header bytes, the data bytes read past it)."""
    buf = b""
    while True:
        size = ans104.header_size_of(buf) if buf else None
        if size is not None:
            return buf[:size], buf[size:]
        if len(buf) > MAX_ITEM_HEADER:
            raise MalformedData(f"data item header is longer than {MAX_ITEM_HEADER} bytes")
        more = stream.read(HEADER_READ)
        if not more:
            raise MalformedData(f"data item ends inside its header ({len(buf)} bytes)")
        buf += more


def _read_at_most(stream, limit: int) -> bytes:
    """Given a stream, return its first bytes up to limit (fewer only at its end)."""
    parts, size = [], 0
    while size < limit:
        more = stream.read(limit - size)
        if not more:
            break
        parts.append(bytes(more))
        size += len(more)
    return b"".join(parts)


def _check_tags(tags) -> None:
    """Refuse bad tags before any data is streamed (the signer would refuse them after)."""
    avro_tags.encode_tags(tags)


def item_row(header, header_bytes: bytes, data_size: int) -> dict:
    """Given a parsed item header, its bytes and its data size, return its objects row."""
    return {
        "id": header.id,
        "kind": "item",
        "format": None,
        "signature_type": header.signature_type,
        "owner": header.owner,
        "owner_address": header.owner_address,
        "target": b64_or_empty(header.target),
        "anchor": b64_or_empty(header.anchor),
        "signature": header.signature,
        "data_size": data_size,
        "data_root": b"",
        "content_type": content_type_of(header.tags),
        "raw_header": bytes(header_bytes),
        "data_complete": 1,
    }
