"""`GET /tx/{id}` of an ANS-104 data item: what it is, who signed it, its tags, where its data is.

The Arweave node (and so ar.io, which proxies `/tx/` to one) answers 404 for a data item,
which leaves a user who just stored a small file (`permastore put` signs one chunk or
less as an item) thinking it is missing while `/{id}` serves it. Here an item answers 200
with a document in the tx JSON's shape (the same keys, base64url values, so a client that
reads `/tx/{id}` finds what it expects) that says plainly it is a data item:
`"format": "ans104"` (never a number: it is not an L1 tx and its signature is over the
ANS-104 deep-hash, not a tx's), `"bundled_in"` (the bundle holding it, or null for one
stored here on its own) and where its data and signed header are served.
"""

from __future__ import annotations

from permastore.protocol import b64url

ITEM_FORMAT = "ans104"


def data_item_json(info) -> dict:
    """Given a data item's ObjectInfo, return its `/tx/{id}` document."""
    return {
        "format": ITEM_FORMAT,
        "id": info.id,
        "signature_type": info.signature_type,
        "owner": b64url.encode(info.owner),
        "owner_address": info.owner_address,
        "target": info.target,
        "anchor": info.anchor,
        "last_tx": info.anchor,  # the tx JSON's name for the same field
        "tags": [{"name": b64url.encode(tag.name), "value": b64url.encode(tag.value)} for tag in info.tags],
        "quantity": "0",  # an item moves no AR
        "reward": "0",  # an item pays no fee itself: its bundle's tx does
        "data": "",  # served apart, as for a format-2 tx
        "data_size": str(info.data_size),
        "data_root": "",
        "signature": b64url.encode(info.signature),
        "bundled_in": info.bundled_in,
        "data_url": f"/{info.id}",
        "header_url": f"/item/{info.id}/header",
    }
