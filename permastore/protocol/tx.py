"""Arweave layer-1 transactions, formats 1 and 2, in the JSON shape of ``GET /tx/{id}``.

Signature data (as the Arweave node builds it):
    format 2, RSA:       deep_hash([denomination?, "2", owner, target, quantity, reward, last_tx,
                                    [[name, value], ...], data_size, data_root])
    format 2, secp256k1: the same without owner (the owner is recovered from the signature)
    format 1:            owner + target + data + quantity + reward + last_tx + name + value + ...
                         or, with a denomination, deep_hash([denomination, owner, target, data,
                         quantity, reward, last_tx, [[name, value], ...]])
with numbers as their decimal text; ``denomination?`` is there only when the tx carries a
denomination above 0. The ID is base64url(sha256(signature)).

secp256k1 txs (allowed since fork 2.9, format 2 only) travel with ``owner: ""`` and a
65-byte signature; ``from_json`` recovers the public key and keeps its compressed form
(33 bytes) as ``owner``, whose SHA-256 is the address, as the node and ar-io-node do.
``to_json`` writes ``owner`` back as "". Note: recovery binds the signature to *some* key
for any content, so for these txs the ID (sha256 of the signature) does not pin the
content; a same-ID variant with other fields recovers another owner. Stores must compare a
known ID's signed fields (``signed_fields``), never trust the ID alone.
"""

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field

from . import b64url, merkle
from .deephash import deep_hash
from .errors import InvalidSignature, LimitExceeded, MalformedData
from .signers import (
    ARWEAVE,
    SECP256K1_SIGNATURE_SIZE,
    Secp256k1Signer,
    Signer,
    recover_secp256k1,
    verify_signature,
)
from .tags import Tag
from .wallet import address_of

FORMATS = (1, 2)
TARGET_SIZE = 32
DATA_ROOT_SIZE = 32
# last_tx is either a previous tx ID (32 bytes) or a recent block hash (48 bytes).
LAST_TX_SIZES = (0, 32, 48)
# Key types of a tx (``Transaction.signature_type``). 3 is the number ANS-104 gives
# secp256k1, but the L1 scheme is Arweave's own (see signers.recover_secp256k1).
RSA_KEY = 1
SECP256K1_KEY = 3
# The node's limits (ar_tx:tx_field_size_limit_v2): all tag names and values together
# at most 2048 bytes, data_size at most 21 digits. Other decimals are bounded too, so
# that no number is longer than Python converts (4300 digits) or anything sane needs.
MAX_TAG_BYTES = 2048
MAX_DECIMAL_DIGITS = {"data_size": 21}
DEFAULT_MAX_DIGITS = 64
MAX_DENOMINATION = 2**24 - 1  # the node encodes it in 24 bits

_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")

__all__ = ["Tag", "Transaction", "signature_data", "sign", "verify", "owner_address", "signed_fields"]


@dataclass(frozen=True)
class Transaction:
    """A transaction; binary fields are raw bytes, ``id`` is the 43-character text ("" unsigned)."""

    format: int = 2
    id: str = ""
    last_tx: bytes = b""
    owner: bytes = b""
    tags: list[Tag] = field(default_factory=list)
    target: bytes = b""
    quantity: int = 0
    data: bytes = b""
    data_size: int = 0
    data_root: bytes = b""
    reward: int = 0
    signature: bytes = b""
    signature_type: int = RSA_KEY
    denomination: int = 0
    # Whether the JSON carried "data_tree" (the node always writes []; arweave.net leaves it
    # out): kept only so that to_json gives back the shape it was given. Not signed.
    lists_data_tree: bool = field(default=False, compare=False)

    @classmethod
    def from_json(cls, obj: dict) -> "Transaction":
        """Given the JSON object of a tx (as /tx/{id} or POST /tx carry it), return the Transaction."""
        return _from_json(obj)

    def to_json(self) -> dict:
        """Return the tx as the /tx/{id} JSON object, fields and strings as Arweave sends them."""
        body = {
            "format": self.format,
            "id": self.id,
            "last_tx": b64url.encode(self.last_tx),
            # A secp256k1 owner is never sent: readers recover it from the signature.
            "owner": "" if self.signature_type == SECP256K1_KEY else b64url.encode(self.owner),
            "tags": [{"name": b64url.encode(t.name), "value": b64url.encode(t.value)} for t in self.tags],
            "target": b64url.encode(self.target),
            "quantity": str(self.quantity),
            "data": b64url.encode(self.data),
            "data_size": str(self.data_size),
        }
        if self.lists_data_tree:
            body["data_tree"] = []
        body |= {
            "data_root": b64url.encode(self.data_root),
            "reward": str(self.reward),
            "signature": b64url.encode(self.signature),
        }
        if self.denomination > 0:
            body["denomination"] = str(self.denomination)
        return body

    @property
    def owner_address(self) -> str:
        return owner_address(self.owner)


def _field(obj: dict, name: str, default=None):
    if name in obj:
        return obj[name]
    if default is None:
        raise MalformedData(f"transaction is missing field {name!r}")
    return default


def _binary(obj: dict, name: str, sizes=None) -> bytes:
    value = _field(obj, name, "")
    try:
        raw = b64url.decode(value)
    except MalformedData as exc:
        raise MalformedData(f"transaction field {name!r}: {exc}") from None
    if sizes is not None and len(raw) not in sizes:
        allowed = " or ".join(str(n) for n in sizes)
        raise MalformedData(f"transaction field {name!r} must be {allowed} bytes, got {len(raw)}")
    return raw


def _decimal(obj: dict, name: str) -> int:
    value = _field(obj, name, "0")
    # Numbers travel as decimal strings; one spelling only, since the text is what is signed.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MalformedData(f"transaction field {name!r} must be a decimal string")
    if isinstance(value, int):
        if value < 0 or value.bit_length() > 4 * DEFAULT_MAX_DIGITS:
            raise MalformedData(f"transaction field {name!r} is negative or far too large")
        value = str(value)
    limit = MAX_DECIMAL_DIGITS.get(name, DEFAULT_MAX_DIGITS)
    if len(value) > limit:
        raise LimitExceeded(f"transaction field {name!r} has {len(value)} digits (at most {limit})")
    if not _DECIMAL.match(value):
        raise MalformedData(f"transaction field {name!r} is not a canonical non-negative decimal: {value!r:.40}")
    return int(value)


def _denomination(obj: dict) -> int:
    """As the node: absent means 0 (not part of the signature); present must be 1..2^24-1."""
    if "denomination" not in obj:
        return 0
    value = _decimal(obj, "denomination")
    if not 0 < value <= MAX_DENOMINATION:
        raise MalformedData(f"transaction denomination must be 1..{MAX_DENOMINATION}, got {value}")
    return value


def _tags(obj: dict) -> list[Tag]:
    raw_tags = _field(obj, "tags", [])
    if not isinstance(raw_tags, list):
        raise MalformedData("transaction field 'tags' must be a list")
    tags, size = [], 0
    for index, tag in enumerate(raw_tags):
        if not isinstance(tag, dict) or "name" not in tag or "value" not in tag:
            raise MalformedData(f"tag {index} must be an object with 'name' and 'value'")
        try:
            tags.append(Tag(b64url.decode(tag["name"]), b64url.decode(tag["value"])))
        except MalformedData as exc:
            raise MalformedData(f"tag {index}: {exc}") from None
        # Checked while decoding, so a body of many tags stops at the limit.
        size += len(tags[-1].name) + len(tags[-1].value)
        if size > MAX_TAG_BYTES:
            raise LimitExceeded(f"transaction tags hold more than {MAX_TAG_BYTES} bytes of names and values")
    return tags


def _format(obj: dict) -> int:
    value = obj.get("format", 1)
    if isinstance(value, str) and value in ("1", "2"):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in FORMATS:
        raise MalformedData(f"transaction format must be 1 or 2, got {value!r:.20}")
    return value


def _data_tree(obj: dict) -> bool:
    """Return whether the JSON lists data_tree (ignored by the node, as here; not signed)."""
    if "data_tree" not in obj:
        return False
    if not isinstance(obj["data_tree"], list):
        raise MalformedData("transaction field 'data_tree' must be a list")
    return True


def _from_json(obj: dict) -> Transaction:
    if not isinstance(obj, dict):
        raise MalformedData("transaction must be a JSON object")
    tx_id = _field(obj, "id", "")
    if tx_id != "":
        b64url.parse_id(tx_id)
    data = _binary(obj, "data")
    owner, signature = _binary(obj, "owner"), _binary(obj, "signature")
    tx = Transaction(
        format=_format(obj),
        id=tx_id,
        last_tx=_binary(obj, "last_tx", LAST_TX_SIZES),
        owner=owner,
        tags=_tags(obj),
        target=_binary(obj, "target", (0, TARGET_SIZE)),
        quantity=_decimal(obj, "quantity"),
        data=data,
        data_size=_decimal(obj, "data_size") if "data_size" in obj else len(data),
        data_root=_binary(obj, "data_root", (0, DATA_ROOT_SIZE)),
        reward=_decimal(obj, "reward"),
        signature=signature,
        # As the node: a signed tx without an owner is a secp256k1 tx.
        signature_type=SECP256K1_KEY if signature and not owner else RSA_KEY,
        denomination=_denomination(obj),
        lists_data_tree=_data_tree(obj),
    )
    if data and tx.data_size != len(data):
        raise MalformedData(f"data_size {tx.data_size} does not match the {len(data)} bytes of inline data")
    if tx.signature_type == SECP256K1_KEY:
        tx = dataclasses.replace(tx, owner=_recovered_owner(tx))
    return tx


def _recovered_owner(tx: Transaction) -> bytes:
    """Given a secp256k1 tx, return its owner (compressed public key) recovered from the signature."""
    if tx.format != 2:
        raise InvalidSignature("only format-2 transactions may be signed with secp256k1 (empty owner)")
    if len(tx.signature) != SECP256K1_SIGNATURE_SIZE:
        raise InvalidSignature(f"a tx with an empty owner needs a 65-byte secp256k1 signature, got {len(tx.signature)}")
    owner = recover_secp256k1(signature_data(tx), tx.signature)
    if owner is None:
        raise InvalidSignature(f"transaction {tx.id or '(unsigned)'}: no secp256k1 key recovers from its signature")
    return owner


def signature_data(tx: Transaction) -> bytes:
    """Given a transaction, return the bytes its owner signs."""
    tag_pairs = [[tag.name, tag.value] for tag in tx.tags]
    denomination = [str(tx.denomination).encode()] if tx.denomination > 0 else []
    if tx.format == 1:
        fields = [tx.owner, tx.target, tx.data, str(tx.quantity).encode(), str(tx.reward).encode(), tx.last_tx]
        if denomination:
            return deep_hash(denomination + fields + [tag_pairs])
        return b"".join(fields + [part for pair in tag_pairs for part in pair])
    owner = [] if tx.signature_type == SECP256K1_KEY else [tx.owner]
    return deep_hash(
        denomination
        + [b"2"]
        + owner
        + [
            tx.target,
            str(tx.quantity).encode(),
            str(tx.reward).encode(),
            tx.last_tx,
            tag_pairs,
            str(tx.data_size).encode(),
            tx.data_root,
        ]
    )


def signed_fields(tx: Transaction) -> tuple:
    """Given a transaction, return everything its signature covers (and the signature), to compare copies."""
    return (
        tx.format, tx.signature_type, tx.owner, tx.target, tx.quantity, tx.reward, tx.last_tx,
        tuple(tx.tags), tx.data if tx.format == 1 else b"", tx.data_size, tx.data_root, tx.denomination,
        tx.signature,
    )  # fmt: skip


def id_of(signature: bytes) -> str:
    """Given a signature, return the ID it gives: base64url(sha256(signature))."""
    return b64url.encode(hashlib.sha256(signature).digest())


def sign(tx: Transaction, signer: Signer) -> Transaction:
    """Given an unsigned transaction and an RSA (or, format 2, a ``Secp256k1Signer``) signer,
    return it signed, with owner, key type and ID set.

    A format-2 tx carrying inline data gets its data_size and data_root from that data.
    """
    if isinstance(signer, Secp256k1Signer):
        if tx.format != 2:
            raise MalformedData("only format-2 transactions may be signed with secp256k1")
        key_type = SECP256K1_KEY
    elif signer.signature_type == ARWEAVE:
        key_type = RSA_KEY
    else:
        raise MalformedData("layer-1 transactions are signed with an Arweave RSA key or a secp256k1 key")
    tx = dataclasses.replace(tx, owner=signer.owner, signature_type=key_type)
    if tx.format == 2 and tx.data:
        root = merkle.compute_root(merkle.chunks_for(tx.data))
        tx = dataclasses.replace(tx, data_size=len(tx.data), data_root=root)
    signature = signer.sign(signature_data(tx))
    return dataclasses.replace(tx, signature=signature, id=id_of(signature))


def verify(tx: Transaction) -> None:
    """Given a transaction, return None when its ID and signature hold; raise InvalidSignature otherwise."""
    if not tx.signature:
        raise InvalidSignature("transaction is not signed")
    # The ID is derived from the signature; a mismatch means a relabelled tx.
    if tx.id != id_of(tx.signature):
        raise InvalidSignature(f"transaction ID {tx.id!r} is not sha256 of its signature")
    if tx.signature_type == SECP256K1_KEY:
        # The owner is what the signature recovers; one given with the tx must be that key.
        if _recovered_owner(tx) != tx.owner:
            raise InvalidSignature(f"transaction {tx.id}: secp256k1 signature recovers another owner")
        return
    if tx.signature_type != RSA_KEY:
        raise InvalidSignature(f"transaction {tx.id}: unknown key type {tx.signature_type!r}")
    if not verify_signature(ARWEAVE, tx.owner, signature_data(tx), tx.signature):
        raise InvalidSignature(f"transaction {tx.id} signature does not verify against its owner")


def owner_address(owner: bytes) -> str:
    """Given owner bytes, return the wallet address: base64url(sha256(owner))."""
    return address_of(owner)
