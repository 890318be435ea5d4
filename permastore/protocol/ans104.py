"""ANS-104 data items: binary layout, signing payload, parse, verify, build.

Layout (integers little-endian):

    signature type     2 bytes
    signature          per type
    owner              per type
    target flag        1 byte (0 or 1), then 32 bytes when 1
    anchor flag        1 byte (0 or 1), then 32 bytes when 1
    number of tags     8 bytes
    tag bytes length   8 bytes
    tags               Avro (see avro_tags)
    data               the rest

The signature covers deep_hash(["dataitem", "1", type, owner, target, anchor,
raw tag bytes, data]); the data enters as its blob hash, so callers can stream it.
The ID is base64url(sha256(signature)).
"""

import hashlib
import struct
from dataclasses import dataclass

from . import b64url
from .avro_tags import MAX_TAGS, MAX_TAGS_BYTES, decode_tags, encode_tags
from .deephash import BlobHasher, Prehashed, deep_hash_list
from .errors import InvalidSignature, LimitExceeded, MalformedData
from .signers import Signer, verify_signature
from .tags import Tag
from .wallet import address_of


@dataclass(frozen=True)
class SignatureType:
    name: str
    signature_size: int
    owner_size: int


SIGNATURE_TYPES = {
    1: SignatureType("arweave", 512, 512),
    2: SignatureType("ed25519", 64, 32),
    3: SignatureType("ethereum", 65, 65),
}
TARGET_SIZE = 32
ANCHOR_SIZE = 32
TYPE_FIELD = 2
COUNT_FIELD = 8
# The longest header before the tag bytes: type, RSA signature and owner, both flags with fields, counts.
MAX_FIXED_HEADER = TYPE_FIELD + 512 + 512 + 2 + TARGET_SIZE + ANCHOR_SIZE + 2 * COUNT_FIELD


@dataclass(frozen=True)
class DataItemHeader:
    """Everything before the data of a data item, parsed."""

    signature_type: int
    signature: bytes
    owner: bytes
    target: bytes | None
    anchor: bytes | None
    tags: list[Tag]
    raw_tags: bytes
    header_size: int
    id: str
    owner_address: str


def _signature_type(prefix: bytes) -> SignatureType:
    (code,) = struct.unpack_from("<H", prefix, 0)
    kind = SIGNATURE_TYPES.get(code)
    if kind is None:
        raise MalformedData(f"unsupported data item signature type {code}")
    return kind


def _optional_field(buf: bytes, pos: int, size: int, what: str) -> tuple[int | None, int]:
    """Given a flag position, return (start of the field or None, position after it); None, -1 when short."""
    if len(buf) <= pos:
        return None, -1
    flag = buf[pos]
    if flag not in (0, 1):
        raise MalformedData(f"data item {what} flag must be 0 or 1, got {flag}")
    return (pos + 1, pos + 1 + size) if flag else (None, pos + 1)


def _layout(prefix: bytes) -> dict | None:
    """Given the first bytes of an item, return the field offsets, or None when more bytes are needed."""
    if len(prefix) < TYPE_FIELD:
        return None
    kind = _signature_type(prefix)
    owner_at = TYPE_FIELD + kind.signature_size
    target_flag_at = owner_at + kind.owner_size
    target_at, anchor_flag_at = _optional_field(prefix, target_flag_at, TARGET_SIZE, "target")
    if anchor_flag_at < 0:
        return None
    anchor_at, counts_at = _optional_field(prefix, anchor_flag_at, ANCHOR_SIZE, "anchor")
    if counts_at < 0 or len(prefix) < counts_at + 2 * COUNT_FIELD:
        return None
    tag_count, tags_size = struct.unpack_from("<QQ", prefix, counts_at)
    # Refuse declared sizes past the limits before anyone buffers that many bytes.
    if tag_count > MAX_TAGS:
        raise LimitExceeded(f"data item declares {tag_count} tags (at most {MAX_TAGS})")
    if tags_size > MAX_TAGS_BYTES:
        raise LimitExceeded(f"data item declares {tags_size} tag bytes (at most {MAX_TAGS_BYTES})")
    tags_at = counts_at + 2 * COUNT_FIELD
    return {
        "kind": kind,
        "owner_at": owner_at,
        "target_at": target_at,
        "anchor_at": anchor_at,
        "tag_count": tag_count,
        "tags_at": tags_at,
        "header_size": tags_at + tags_size,
    }


def header_size_of(prefix: bytes) -> int | None:
    """Given the first bytes of an item, return its header size, or None when the prefix is too short to tell."""
    layout = _layout(bytes(prefix[:MAX_FIXED_HEADER]))
    return None if layout is None else layout["header_size"]


def parse_header(data: bytes | memoryview) -> DataItemHeader:
    """Given bytes starting with a data item header (at least the whole header), return it parsed."""
    buf = memoryview(data)
    layout = _layout(bytes(buf[:MAX_FIXED_HEADER]))
    if layout is None or len(buf) < layout["header_size"]:
        raise MalformedData(f"data item is shorter than its header ({len(buf)} bytes)")
    kind, owner_at, tags_at = layout["kind"], layout["owner_at"], layout["tags_at"]
    signature = bytes(buf[TYPE_FIELD:owner_at])
    raw_tags = bytes(buf[tags_at : layout["header_size"]])
    tags = decode_tags(raw_tags)
    if len(tags) != layout["tag_count"]:
        raise MalformedData(f"data item declares {layout['tag_count']} tags but holds {len(tags)}")
    owner = bytes(buf[owner_at : owner_at + kind.owner_size])
    target_at, anchor_at = layout["target_at"], layout["anchor_at"]
    return DataItemHeader(
        signature_type=struct.unpack_from("<H", buf, 0)[0],
        signature=signature,
        owner=owner,
        target=None if target_at is None else bytes(buf[target_at : target_at + TARGET_SIZE]),
        anchor=None if anchor_at is None else bytes(buf[anchor_at : anchor_at + ANCHOR_SIZE]),
        tags=tags,
        raw_tags=raw_tags,
        header_size=layout["header_size"],
        id=b64url.encode(hashlib.sha256(signature).digest()),
        owner_address=address_of(owner),
    )


def _payload_hash(signature_type, owner, target, anchor, raw_tags, data_blob_hash) -> bytes:
    return deep_hash_list(
        [
            b"dataitem",
            b"1",
            str(signature_type).encode("ascii"),
            owner,
            target or b"",
            anchor or b"",
            raw_tags,
            Prehashed(data_blob_hash),
        ]
    )


def signature_payload_hash(header: DataItemHeader, data_blob_hash: bytes) -> bytes:
    """Given a header and the deep-hash of the item's data (BlobHasher), return the 48-byte signed hash."""
    return _payload_hash(
        header.signature_type, header.owner, header.target, header.anchor, header.raw_tags, data_blob_hash
    )


def verify_header(header: DataItemHeader, data_blob_hash: bytes) -> None:
    """Given a header and its data's blob hash, return None when the signature holds; raise InvalidSignature."""
    message = signature_payload_hash(header, data_blob_hash)
    if not verify_signature(header.signature_type, header.owner, message, header.signature):
        raise InvalidSignature(f"data item {header.id} signature does not verify against its owner")


def _check_optional(value: bytes | None, size: int, what: str) -> None:
    if value is not None and len(value) != size:
        raise MalformedData(f"data item {what} must be {size} bytes, got {len(value)}")


def build_header(
    signer: Signer, data_blob_hash: bytes, tags: list[Tag], target: bytes | None = None, anchor: bytes | None = None
) -> bytes:
    """Given a signer, the data's blob hash and the fields, return the signed header bytes."""
    kind = SIGNATURE_TYPES.get(signer.signature_type)
    if kind is None:
        raise MalformedData(f"unsupported data item signature type {signer.signature_type}")
    if len(signer.owner) != kind.owner_size:
        raise MalformedData(f"{kind.name} owner must be {kind.owner_size} bytes, got {len(signer.owner)}")
    _check_optional(target, TARGET_SIZE, "target")
    _check_optional(anchor, ANCHOR_SIZE, "anchor")
    raw_tags = encode_tags(tags)
    message = _payload_hash(signer.signature_type, signer.owner, target, anchor, raw_tags, data_blob_hash)
    signature = signer.sign(message)
    if len(signature) != kind.signature_size:
        raise MalformedData(f"{kind.name} signature must be {kind.signature_size} bytes, got {len(signature)}")
    return assemble_header(signer.signature_type, signature, signer.owner, target, anchor, len(tags), raw_tags)


def assemble_header(
    signature_type: int,
    signature: bytes,
    owner: bytes,
    target: bytes | None,
    anchor: bytes | None,
    tag_count: int,
    raw_tags: bytes,
) -> bytes:
    """Given an item's signed fields (tags already Avro-encoded), return its binary header: the one
    place the ANS-104 header layout is written."""
    return b"".join(
        [
            struct.pack("<H", signature_type),
            signature,
            owner,
            b"\x01" + target if target is not None else b"\x00",
            b"\x01" + anchor if anchor is not None else b"\x00",
            struct.pack("<QQ", tag_count, len(raw_tags)),
            raw_tags,
        ]
    )


def _blob_hash(data: bytes) -> bytes:
    hasher = BlobHasher()
    hasher.update(data)
    return hasher.digest()


def parse_item(item: bytes) -> tuple[DataItemHeader, bytes]:
    """Given a whole item's bytes, return (header, data); the signature is not checked."""
    header = parse_header(item)
    return header, bytes(memoryview(item)[header.header_size :])


def verify_item(item: bytes) -> DataItemHeader:
    """Given a whole item's bytes, return its header when the signature holds; raise otherwise."""
    header, data = parse_item(item)
    verify_header(header, _blob_hash(data))
    return header


def build_item(
    signer: Signer, data: bytes, tags: list[Tag], target: bytes | None = None, anchor: bytes | None = None
) -> bytes:
    """Given a signer, data and fields, return the whole signed item's bytes."""
    return build_header(signer, _blob_hash(data), tags, target, anchor) + bytes(data)
