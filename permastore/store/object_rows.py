"""The ``objects`` rows of data items and L1 txs, as the writers, the unbundler and the
bucket's learner insert them (one definition, so every path stores the same columns)."""

from __future__ import annotations

import json

from permastore.protocol.ans104 import DataItemHeader
from permastore.protocol.tx import Transaction
from permastore.store.index import b64_or_empty, content_type_of

# An ANS-104 header is at most ~0.6 MB (128 tags of 1 KiB + 3 KiB); refuse anything longer.
MAX_ITEM_HEADER = 1024 * 1024
HEADER_READ = 64 * 1024


def item_row(header: DataItemHeader, header_bytes: bytes, data_size: int) -> dict:
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


def tx_row(tx: Transaction) -> dict:
    """Given a verified tx, return its objects row (data complete unless changed)."""
    body = tx.to_json()
    if tx.format == 2:
        body["data"] = ""  # format-2 data is served by /{id} and /chunk, not inside the header
    return {
        "id": tx.id,
        "kind": "tx",
        "format": tx.format,
        "signature_type": tx.signature_type,
        "owner": tx.owner,
        "owner_address": tx.owner_address,
        "target": b64_or_empty(tx.target),
        "anchor": b64_or_empty(tx.last_tx),
        "quantity": str(tx.quantity),
        "reward": str(tx.reward),
        "signature": tx.signature,
        "data_size": tx.data_size,
        "data_root": tx.data_root,
        "content_type": content_type_of(tx.tags),
        "raw_header": json.dumps(body, separators=(",", ":")).encode(),
        "data_complete": 1,
    }
