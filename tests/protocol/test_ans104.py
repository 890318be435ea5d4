import dataclasses
import hashlib

import pytest

from permastore.protocol import ans104, b64url
from permastore.protocol.deephash import BlobHasher, deep_hash
from permastore.protocol.errors import InvalidSignature, LimitExceeded, MalformedData
from permastore.protocol.signers import Ed25519Signer, EthereumSigner, RsaSigner
from permastore.protocol.tags import Tag

GOAR_IDS = {
    "test.item": "gJAcqxkJIatZHwB3R4wI8Fsmg5eGwI-AjTZ3kWDx3sc",
    "test2.item": "eR75mpfjPGU80Smo74_UIzy462c9cQwBxRjxsd_Zux0",
}


@pytest.mark.parametrize("name", sorted(GOAR_IDS))
def test_goar_items_parse_and_verify(arweave_vectors, name):
    item = (arweave_vectors / "goar" / name).read_bytes()
    assert len(item) == 1128
    header = ans104.verify_item(item)
    assert header.id == GOAR_IDS[name]
    assert header.signature_type == 1
    assert header.tags == [Tag(b"goar", b"bundleTx"), Tag(b"App-Version", b"2.0.0")]
    # goar writes a negative block count: zigzag of a negative number is odd.
    assert header.raw_tags[0] & 1 == 1
    assert header.target is not None and header.anchor is None
    assert header.owner_address == b64url.encode(hashlib.sha256(header.owner).digest())
    assert ans104.header_size_of(item) == header.header_size
    assert ans104.header_size_of(item[:100]) is None


def _signers(test_jwk):
    return [
        RsaSigner(test_jwk),
        Ed25519Signer(hashlib.sha256(b"ed").digest()),
        EthereumSigner(hashlib.sha256(b"eth").digest()),
    ]


@pytest.mark.parametrize("kind", [1, 2, 3])
def test_own_items_round_trip(test_jwk, kind):
    signer = _signers(test_jwk)[kind - 1]
    tags = [Tag.text("Content-Type", "text/plain"), Tag.text("App-Name", "permastore")]
    target, anchor = bytes(range(32)), bytes(range(32, 64))
    item = ans104.build_item(signer, b"hello permaweb", tags, target=target, anchor=anchor)
    header, data = ans104.parse_item(item)
    assert data == b"hello permaweb"
    assert (header.signature_type, header.owner, header.target, header.anchor) == (kind, signer.owner, target, anchor)
    assert header.tags == tags
    assert header.id == b64url.encode(hashlib.sha256(header.signature).digest())
    assert ans104.verify_item(item) == header
    bare = ans104.build_item(signer, b"", [])
    assert ans104.verify_item(bare).tags == []
    assert ans104.parse_item(bare)[1] == b""


def test_streaming_header_matches_whole_item(test_jwk):
    signer = Ed25519Signer(bytes(32))
    data = bytes(range(256)) * 5000
    hasher = BlobHasher()
    for start in range(0, len(data), 65536):
        hasher.update(data[start : start + 65536])
    header_bytes = ans104.build_header(signer, hasher.digest(), [Tag(b"a", b"b")])
    header = ans104.parse_header(header_bytes)
    assert header.header_size == len(header_bytes)
    ans104.verify_header(header, hasher.digest())
    ans104.verify_item(header_bytes + data)
    expected = deep_hash(
        [b"dataitem", b"1", b"2", header.owner, b"", b"", header.raw_tags, data]
    )
    assert ans104.signature_payload_hash(header, hasher.digest()) == expected


def _tampered(header, field):
    if field == "raw_tags":
        raw = bytearray(header.raw_tags)
        raw[-2] ^= 0x01  # a byte inside the last value: still valid Avro
        return dataclasses.replace(header, raw_tags=bytes(raw))
    if field in ("target", "anchor"):
        value = getattr(header, field)
        return dataclasses.replace(header, **{field: bytes(32) if value is None else None})
    value = bytearray(getattr(header, field))
    value[3] ^= 0x01
    return dataclasses.replace(header, **{field: bytes(value)})


@pytest.mark.parametrize("field", ["raw_tags", "anchor", "target", "owner", "signature", "data"])
@pytest.mark.parametrize("kind", [1, 2, 3])
def test_tampering_fails(test_jwk, kind, field):
    signer = _signers(test_jwk)[kind - 1]
    data = b"some data"
    item = ans104.build_item(signer, data, [Tag(b"name", b"value")], anchor=bytes(range(32)))
    header, _ = ans104.parse_item(item)
    blob_hash = deep_hash(data)
    ans104.verify_header(header, blob_hash)
    if field == "data":
        bad_header, bad_hash = header, deep_hash(b"some datA")
    else:
        bad_header, bad_hash = _tampered(header, field), blob_hash
    with pytest.raises(InvalidSignature):
        ans104.verify_header(bad_header, bad_hash)


@pytest.mark.parametrize("name", sorted(GOAR_IDS))
def test_goar_byte_level_tampering_fails(arweave_vectors, name):
    item = (arweave_vectors / "goar" / name).read_bytes()
    header = ans104.parse_header(item)
    tags_at = header.header_size - len(header.raw_tags)
    target_at = 2 + 512 + 512 + 1
    for position in (tags_at + 3, target_at + 5, header.header_size + 2, 2 + 512 + 100):
        bad = bytearray(item)
        bad[position] ^= 0x01
        with pytest.raises(InvalidSignature):
            ans104.verify_item(bytes(bad))


def test_parse_errors(arweave_vectors):
    item = (arweave_vectors / "goar" / "test.item").read_bytes()
    with pytest.raises(MalformedData):
        ans104.parse_header(item[:1000])
    with pytest.raises(MalformedData):
        ans104.parse_header(b"\x09\x00" + item[2:])  # unknown signature type
    bad_flag = bytearray(item)
    bad_flag[2 + 512 + 512] = 2
    with pytest.raises(MalformedData):
        ans104.parse_header(bytes(bad_flag))
    header = ans104.parse_header(item)
    counts_at = header.header_size - len(header.raw_tags) - 16
    wrong_count = bytearray(item)
    wrong_count[counts_at] = 3
    with pytest.raises(MalformedData):
        ans104.parse_header(bytes(wrong_count))
    huge = bytearray(item)
    huge[counts_at + 8 : counts_at + 16] = (2**40).to_bytes(8, "little")
    with pytest.raises(LimitExceeded):
        ans104.header_size_of(bytes(huge))


def test_build_rejects_bad_fields():
    signer = Ed25519Signer(bytes(32))
    with pytest.raises(MalformedData):
        ans104.build_item(signer, b"x", [], target=b"short")
    with pytest.raises(MalformedData):
        ans104.build_item(signer, b"x", [], anchor=bytes(33))
    with pytest.raises(LimitExceeded):
        ans104.build_item(signer, b"x", [Tag(b"n", b"")])
