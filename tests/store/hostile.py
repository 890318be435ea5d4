"""Hostile inputs of issue 7 (points 1 and 13), built the way an attacker would: by hand.

Shared by the store, CLI and real-server tests.
"""

from __future__ import annotations

import hashlib
import struct

from permastore.protocol import ans104, b64url, bundle
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction

BUNDLE_TAGS = [Tag(b"Bundle-Format", b"binary"), Tag(b"Bundle-Version", b"2.0.0")]
# RSA owners that `cryptography` refuses to build a key from (ValueError: n must be >= 3,
# e must be < n, ...): each one crashed the node before it was refused cleanly.
BAD_RSA_OWNERS = {
    "all zero": bytes(512),
    "modulus 2": (2).to_bytes(512, "big"),
    "modulus 1": (1).to_bytes(512, "big"),
    "modulus below e": (65537).to_bytes(512, "big"),
}


def forged_rsa_item(owner: bytes = bytes(512), data: bytes = b"forged", seed: int = 1) -> bytes:
    """Return an ANS-104 type-1 item with the given (malformed) RSA owner and a junk signature."""
    signature = hashlib.sha512(bytes([seed])).digest() * 8  # 512 bytes, distinct per seed
    header = struct.pack("<H", 1) + signature + owner + b"\x00\x00" + struct.pack("<QQ", 0, 0)
    return header + data


def forged_rsa_tx(owner: bytes = bytes(512), data_size: int = 0) -> dict:
    """Return the POST /tx JSON of a format-2 tx with the given (malformed) RSA owner."""
    signature = hashlib.sha512(b"forged tx").digest() * 8
    return {
        "format": 2,
        "id": b64url.encode(hashlib.sha256(signature).digest()),
        "last_tx": "",
        "owner": b64url.encode(owner),
        "tags": [],
        "target": "",
        "quantity": "0",
        "data": "",
        "data_size": str(data_size),
        "data_root": "" if data_size == 0 else b64url.encode(bytes(32)),
        "reward": "0",
        "signature": b64url.encode(signature),
    }


def bundle_item(signer, items: list[bytes]) -> bytes:
    """Return a signed ANS-104 item whose data is a bundle of the given items."""
    return ans104.build_item(signer, bundle.build_bundle(items), BUNDLE_TAGS)


def item_id(item: bytes) -> str:
    return ans104.parse_header(item).id


def flipped(data: bytes, at: int) -> bytes:
    """Return data with one bit flipped at the given index (negative: from the end)."""
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def mixed_bundle(ed_signer) -> tuple[bytes, list[bytes], list[bytes]]:
    """Return (signed bundle item, good items, bad items): good ed25519 items and every bad RSA owner."""
    good = [ans104.build_item(ed_signer, f"good sibling {i}".encode(), [Tag(b"n", str(i).encode())]) for i in range(3)]
    bad = [forged_rsa_item(owner, seed=i) for i, owner in enumerate(BAD_RSA_OWNERS.values())]
    items = [good[0], bad[0], good[1], *bad[1:], good[2]]
    return bundle_item(ed_signer, items), good, bad


def tx_from(doc: dict) -> Transaction:
    return Transaction.from_json(doc)
