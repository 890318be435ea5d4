"""Plain uploads signed by the node wallet, and signed data items as given.

A plain upload of more than one chunk becomes a format-2 L1 tx signed by the node wallet
(data_root over its chunks, a data_path per chunk, a weave offset, mined into the next
block), so any peer can fetch it chunk by chunk, each chunk proven; one chunk or less
(records, small notes) is wrapped in an ANS-104 item, as is anything with a target or
anchor. Either way the data streams in first (hashed on the way), then the signature is
made or checked, then everything is committed at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from permastore.protocol import ans104, avro_tags
from permastore.protocol.errors import MalformedData
from permastore.protocol.merkle import MAX_CHUNK_SIZE
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign
from permastore.store.commits import ObjectCommitter
from permastore.store.index import content_type_of
from permastore.store.ingest import PrefixedStream, as_stream
from permastore.store.known_copies import KnownCopies
from permastore.store.object_reader import ObjectReader
from permastore.store.object_rows import HEADER_READ, MAX_ITEM_HEADER, item_row, tx_row
from permastore.store.records import ObjectInfo
from permastore.store.transactions import TxWriter
from permastore.store.wallet_file import NodeWallet


class ItemWriter:
    """Given the committer, the reader, the known-copy check, the tx writer and the node wallet:
    ``put_data`` and ``put_item``."""

    def __init__(self, committer: ObjectCommitter, reader: ObjectReader, known: KnownCopies, txs: TxWriter,
                 wallet: NodeWallet):  # fmt: skip
        self.committer = committer
        self.reader = reader
        self.known = known
        self.txs = txs
        self.wallet = wallet

    def put_data(self, stream: Any, tags: Any = (), content_type: str | None = None, target: bytes | None = None,
                 anchor: bytes | None = None, progress: Callable | None = None) -> ObjectInfo:  # fmt: skip
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
        ingested = self.committer.ingest(stream, want_deep_hash=True, want_sha256=False, progress=progress)
        try:
            assert ingested.blob_hash is not None  # asked for (want_deep_hash)
            header_bytes = ans104.build_header(self.wallet.signer, ingested.blob_hash, tags, target=target, anchor=anchor)
            header = ans104.parse_header(header_bytes)
        except BaseException:
            ingested.discard()
            raise
        return self.committer.commit(ingested, item_row(header, header_bytes, ingested.size), header.tags)

    def _put_data_as_tx(self, stream: Any, tags: list[Tag], progress: Callable | None) -> ObjectInfo:
        """Given plain data of more than one chunk, store it as a format-2 L1 tx signed by the node wallet."""
        ingested = self.committer.ingest(stream, want_deep_hash=False, want_sha256=True, progress=progress)
        try:
            assert ingested.data_root is not None  # asked for (want_sha256)
            unsigned = Transaction(format=2, tags=tags, data_size=ingested.size, data_root=ingested.data_root)
            tx = sign(unsigned, self.wallet.signer)
        except BaseException:
            ingested.discard()
            raise
        return self.txs.commit_tx(ingested, tx_row(tx), tx)

    def put_item(self, stream: Any, progress: Callable | None = None) -> ObjectInfo:
        """Given a signed binary ANS-104 item (bytes or stream), verify and store it; return its info.

        Storing the same item again returns the stored one, once the copy verified; a copy
        that does not verify is refused even when its ID is stored (InvalidSignature), and
        one that verifies but differs from the stored item is a Conflict.
        """
        stream = as_stream(stream)
        header_bytes, rest = _read_item_header(stream)
        header = ans104.parse_header(header_bytes)
        existing = self.reader.info(header.id)
        if existing is not None:
            known = self.known.check_known_item(existing, header, header_bytes, PrefixedStream(rest, stream), progress)
            self.committer.publish(known)  # with a bucket: a put that failed there before is retried
            return known
        ingested = self.committer.ingest(PrefixedStream(rest, stream), want_deep_hash=True, want_sha256=False,
                                         progress=progress)  # fmt: skip
        try:
            # Security: the signature covers the data's deep-hash; nothing is indexed unless it verifies.
            assert ingested.blob_hash is not None  # asked for (want_deep_hash)
            ans104.verify_header(header, ingested.blob_hash)
        except BaseException:
            ingested.discard()
            raise
        return self.committer.commit(ingested, item_row(header, header_bytes, ingested.size), header.tags)


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
