"""Puts of an ID that is already stored: the copy must verify and be the stored object.

An ID is sha256 of a signature, so a known ID alone proves nothing about the bytes that
come with it: a tampered copy keeps the ID of the original. A known item is therefore
verified over the data that came with it, and its header compared with the stored one;
a known tx must carry the same signed fields (for secp256k1 txs this is the only thing
that tells a same-ID variant from the original, as its owner is recovered from whatever
fields come with the signature) and, when data comes with it, data that gives its data_root.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from permastore.protocol import ans104
from permastore.protocol.ans104 import DataItemHeader
from permastore.protocol.deephash import BlobHasher
from permastore.protocol.merkle import DataRootBuilder
from permastore.protocol.tx import Transaction, signed_fields
from permastore.store.chunker import arweave_chunks
from permastore.store.errors import Conflict, DataMismatch, StoreError
from permastore.store.ingest import BLOCK_SIZE, as_stream
from permastore.store.object_reader import ObjectReader
from permastore.store.records import ObjectInfo


class KnownCopies:
    """Given the reader, check a copy of an already stored item or tx before acknowledging it."""

    def __init__(self, reader: ObjectReader):
        self.reader = reader

    def check_known_item(self, existing: ObjectInfo, header: DataItemHeader, header_bytes: bytes, data_stream: Any,
                         progress: Callable | None = None) -> ObjectInfo:  # fmt: skip
        """Given the stored info of an item and a new copy (header, data stream), return the info
        when the copy verifies and is the stored item; raise InvalidSignature or Conflict otherwise."""
        hasher, size = BlobHasher(), 0
        for block in _blocks(as_stream(data_stream)):
            hasher.update(block)
            size += len(block)
            if progress:
                progress(len(block))
        # Security: verified first, whatever the store holds; a copy that does not verify is refused.
        ans104.verify_header(header, hasher.digest())
        if bytes(header_bytes) != self.reader.raw_header(existing.id) or size != existing.data_size:
            raise Conflict(f"item {existing.id} is stored with another header or data size than this copy")
        return existing

    def check_known_tx(self, tx: Transaction, data: Any = None) -> None:
        """Given a verified tx whose ID is stored, raise Conflict when its signed fields differ from
        the stored tx's, and DataMismatch when ``data`` (if any) does not give its data_size and data_root."""
        try:
            stored = Transaction.from_json(json.loads(self.reader.raw_header(tx.id)))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(f"stored header of tx {tx.id} cannot be read: {exc}") from None
        if signed_fields(stored) != signed_fields(tx):
            raise Conflict(f"tx {tx.id} is stored with other signed fields than this copy")
        if data is None or tx.format != 2:
            return  # format-1 data is inline, hence among the signed fields
        size, root = _data_root_of(data, tx.data_size)
        if size != tx.data_size or (size and root != tx.data_root):
            raise DataMismatch(f"tx {tx.id}: this copy's data does not match its data_size and data_root")


def _blocks(stream: Any) -> Iterator[bytes]:
    while True:
        block = stream.read(BLOCK_SIZE)
        if not block:
            return
        yield bytes(block)


def _data_root_of(data: Any, expected_size: int) -> tuple[int, bytes]:
    """Given data (bytes or stream), return (its size, its data_root), reading no more than
    expected_size + 1 bytes (past that the size is wrong whatever follows)."""
    stream, seen = as_stream(data), 0

    def bounded() -> Iterator[bytes]:
        nonlocal seen
        for block in _blocks(stream):
            block = block[: expected_size + 1 - seen]
            seen += len(block)
            yield block
            if seen > expected_size:
                return

    builder = DataRootBuilder()
    for chunk in arweave_chunks(bounded()):
        if seen > expected_size:
            return seen, b""
        builder.add(chunk)
    return seen, builder.root() if seen else b""
