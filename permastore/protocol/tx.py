"""Arweave layer-1 transactions, formats 1 and 2, in the JSON shape of ``GET /tx/{id}``.

Signature data:
    format 2: deep_hash(["2", owner, target, quantity, reward, last_tx,
                         [[name, value], ...], data_size, data_root])
    format 1: owner + target + data + quantity + reward + last_tx + name + value + ...
with numbers as their decimal text. The ID is base64url(sha256(signature)).
"""

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field

from . import b64url, merkle
from .deephash import deep_hash
from .errors import InvalidSignature, MalformedData
from .signers import ARWEAVE, Signer, verify_signature
from .tags import Tag
from .wallet import address_of

FORMATS = (1, 2)
TARGET_SIZE = 32
DATA_ROOT_SIZE = 32
# last_tx is either a previous tx ID (32 bytes) or a recent block hash (48 bytes).
LAST_TX_SIZES = (0, 32, 48)

_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")

__all__ = ["Tag", "Transaction", "signature_data", "sign", "verify", "owner_address"]


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

    @classmethod
    def from_json(cls, obj: dict) -> "Transaction":
        """Given the JSON object of a tx (as /tx/{id} or POST /tx carry it), return the Transaction."""
        return _from_json(obj)

    def to_json(self) -> dict:
        """Return the tx as the /tx/{id} JSON object, strings as Arweave sends them."""
        return {
            "format": self.format,
            "id": self.id,
            "last_tx": b64url.encode(self.last_tx),
            "owner": b64url.encode(self.owner),
            "tags": [{"name": b64url.encode(t.name), "value": b64url.encode(t.value)} for t in self.tags],
            "target": b64url.encode(self.target),
            "quantity": str(self.quantity),
            "data": b64url.encode(self.data),
            "data_size": str(self.data_size),
            "data_root": b64url.encode(self.data_root),
            "reward": str(self.reward),
            "signature": b64url.encode(self.signature),
        }

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
    text = str(value)
    if not _DECIMAL.match(text):
        raise MalformedData(f"transaction field {name!r} is not a canonical non-negative decimal: {text!r:.40}")
    return int(text)


def _tags(obj: dict) -> list[Tag]:
    raw_tags = _field(obj, "tags", [])
    if not isinstance(raw_tags, list):
        raise MalformedData("transaction field 'tags' must be a list")
    tags = []
    for index, tag in enumerate(raw_tags):
        if not isinstance(tag, dict) or "name" not in tag or "value" not in tag:
            raise MalformedData(f"tag {index} must be an object with 'name' and 'value'")
        try:
            tags.append(Tag(b64url.decode(tag["name"]), b64url.decode(tag["value"])))
        except MalformedData as exc:
            raise MalformedData(f"tag {index}: {exc}") from None
    return tags


def _format(obj: dict) -> int:
    value = obj.get("format", 1)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if value not in FORMATS or isinstance(value, bool):
        raise MalformedData(f"transaction format must be 1 or 2, got {value!r:.20}")
    return value


def _from_json(obj: dict) -> Transaction:
    if not isinstance(obj, dict):
        raise MalformedData("transaction must be a JSON object")
    tx_id = _field(obj, "id", "")
    if tx_id != "":
        b64url.parse_id(tx_id)
    data = _binary(obj, "data")
    tx = Transaction(
        format=_format(obj),
        id=tx_id,
        last_tx=_binary(obj, "last_tx", LAST_TX_SIZES),
        owner=_binary(obj, "owner"),
        tags=_tags(obj),
        target=_binary(obj, "target", (0, TARGET_SIZE)),
        quantity=_decimal(obj, "quantity"),
        data=data,
        data_size=_decimal(obj, "data_size") if "data_size" in obj else len(data),
        data_root=_binary(obj, "data_root", (0, DATA_ROOT_SIZE)),
        reward=_decimal(obj, "reward"),
        signature=_binary(obj, "signature"),
    )
    if data and tx.data_size != len(data):
        raise MalformedData(f"data_size {tx.data_size} does not match the {len(data)} bytes of inline data")
    return tx


def signature_data(tx: Transaction) -> bytes:
    """Given a transaction, return the bytes its owner signs."""
    if tx.format == 1:
        parts = [tx.owner, tx.target, tx.data, str(tx.quantity).encode(), str(tx.reward).encode(), tx.last_tx]
        for tag in tx.tags:
            parts += [tag.name, tag.value]
        return b"".join(parts)
    return deep_hash(
        [
            b"2",
            tx.owner,
            tx.target,
            str(tx.quantity).encode(),
            str(tx.reward).encode(),
            tx.last_tx,
            [[tag.name, tag.value] for tag in tx.tags],
            str(tx.data_size).encode(),
            tx.data_root,
        ]
    )


def id_of(signature: bytes) -> str:
    """Given a signature, return the ID it gives: base64url(sha256(signature))."""
    return b64url.encode(hashlib.sha256(signature).digest())


def sign(tx: Transaction, signer: Signer) -> Transaction:
    """Given an unsigned transaction and an RSA signer, return it signed, with owner and ID set.

    A format-2 tx carrying inline data gets its data_size and data_root from that data.
    """
    if signer.signature_type != ARWEAVE:
        raise MalformedData("layer-1 transactions are signed with an Arweave RSA key")
    tx = dataclasses.replace(tx, owner=signer.owner)
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
    if not verify_signature(ARWEAVE, tx.owner, signature_data(tx), tx.signature):
        raise InvalidSignature(f"transaction {tx.id} signature does not verify against its owner")


def owner_address(owner: bytes) -> str:
    """Given owner bytes, return the wallet address: base64url(sha256(owner))."""
    return address_of(owner)
