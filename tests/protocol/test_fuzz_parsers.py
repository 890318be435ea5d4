"""Hypothesis fuzz of the protocol parsers (issue 7): arbitrary and mutated-valid inputs either
parse or raise a ProtocolError subclass, never another exception, and never allocate in
proportion to a count or size the input merely claims.

Examples are bounded so that the suite stays fast. The examples are derandomized (the same
every run, so a failure reproduces); set PERMASTORE_FUZZ_RANDOM=1 (and raise
PERMASTORE_FUZZ_EXAMPLES) to explore new ones.
"""

from __future__ import annotations

import json
import os
import struct
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from permastore.protocol import ans104, avro_tags, b64url, bundle, merkle
from permastore.protocol.deephash import BlobHasher
from permastore.protocol.errors import (
    InvalidProof,
    InvalidSignature,
    LimitExceeded,
    MalformedData,
    ProtocolError,
)
from permastore.protocol.signers import Ed25519Signer, EthereumSigner, Secp256k1Signer
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign, verify

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors"
EXAMPLES = int(os.environ.get("PERMASTORE_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("PERMASTORE_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ED = Ed25519Signer(bytes(range(32)))
ETH = EthereumSigner(bytes(range(1, 33)))
TAGS = [Tag(b"Content-Type", b"text/plain"), Tag(b"App-Name", b"fuzz"), Tag(b"n", b"1")]
VALID_ITEMS = [
    ans104.build_item(ED, b"hello fuzz", TAGS),
    ans104.build_item(ED, b"", [], target=bytes(range(32)), anchor=bytes(32)),
    ans104.build_item(ETH, b"eth item", TAGS[:1]),
    (VECTORS / "arweave" / "goar" / "test.item").read_bytes(),  # RSA, negative Avro block count
]
VALID_BUNDLE = bundle.build_bundle(VALID_ITEMS[:3])
MAINNET_TX = json.loads((VECTORS / "ario" / "txs" / "8V0K0DltgqPzBDa_FYyOdWnfhSngRj7ORH0lnOeqChw.json").read_text())
ECDSA_TX = json.loads((VECTORS / "ario" / "signed_ecdsa_tx.json").read_text())
OWN_ECDSA_TX = sign(Transaction(format=2, data=b"fuzz", reward=3), Secp256k1Signer(bytes(range(2, 34)))).to_json()
VALID_TXS = [MAINNET_TX, ECDSA_TX, OWN_ECDSA_TX]


@st.composite
def mutated(draw, originals: list[bytes]) -> bytes:
    """A valid input with a few flips, insertions, deletions or a truncation."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "count"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and data:
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "count" and len(data) >= at + 8:
            # A huge little-endian count or size where one may be.
            data[at : at + 8] = struct.pack("<Q", draw(st.sampled_from([2**62, 2**63 - 1, 2**64 - 1, 2**32])))
    return bytes(data)


def _blob_hash(data: bytes) -> bytes:
    hasher = BlobHasher()
    hasher.update(data)
    return hasher.digest()


def check_item(raw: bytes) -> None:
    try:
        size = ans104.header_size_of(raw)
        assert size is None or size > 0
        header, data = ans104.parse_item(raw)
    except ProtocolError:
        return
    assert header.header_size + len(data) == len(raw) and b64url.is_id(header.id)
    try:
        ans104.verify_header(header, _blob_hash(data))
    except InvalidSignature:
        pass


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_as_an_item(raw):
    check_item(raw)


@FUZZ
@given(st.integers(1, 3).map(lambda t: struct.pack("<H", t)), st.binary(max_size=1500))
def test_arbitrary_item_bodies_of_each_signature_type(kind, rest):
    check_item(kind + rest)


@FUZZ
@given(mutated(VALID_ITEMS))
def test_mutated_valid_items(raw):
    check_item(raw)


@FUZZ
@given(
    st.integers(0, 2**24) | st.sampled_from([2**4096 - 1, 2**4095, 65537, 65539]),
    st.binary(min_size=512, max_size=512),
    st.binary(max_size=64),
)
def test_rsa_items_with_tiny_or_odd_moduli(modulus, signature, data):
    """The attack of issue 7 point 1, and its neighbours: moduli the RSA library refuses to build."""
    owner = modulus.to_bytes(512, "big")
    check_item(struct.pack("<H", 1) + signature + owner + b"\x00\x00" + struct.pack("<QQ", 0, 0) + data)


def check_tags(raw: bytes) -> None:
    try:
        tags = avro_tags.decode_tags(raw)
    except ProtocolError:
        return
    avro_tags.check_limits(tags)


@FUZZ
@given(st.binary(max_size=1024))
def test_arbitrary_bytes_as_avro_tags(raw):
    check_tags(raw)


VALID_TAG_BLOCKS = [avro_tags.encode_tags(TAGS), ans104.parse_header(VALID_ITEMS[3]).raw_tags]


@FUZZ
@given(mutated(VALID_TAG_BLOCKS))
def test_mutated_valid_avro_tags(raw):
    check_tags(raw)


def _zigzag(value: int) -> bytes:
    zigzag, out = (value << 1) ^ (value >> 63), bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    return bytes(out + bytes([zigzag]))


@FUZZ
@given(
    st.sampled_from([2**62, -(2**62), 2**63 - 1, -(2**63) + 1, 129, -129]),
    st.sampled_from([0, 1, 2**62, 2**40]),
    st.binary(max_size=64),
)
def test_claimed_huge_tag_counts_and_lengths_allocate_nothing(count, length, rest):
    raw = _zigzag(count) + _zigzag(length) + rest
    tracemalloc.start()
    try:
        try:
            avro_tags.decode_tags(raw)
        except ProtocolError:
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024


def test_a_claimed_count_of_2_62_tags_is_refused_at_once():
    for raw in (_zigzag(2**62) + b"\x02a\x02b\x00", _zigzag(-(2**62)) + _zigzag(4) + b"\x02a\x02b\x00"):
        try:
            avro_tags.decode_tags(raw)
        except LimitExceeded:
            continue
        raise AssertionError("a 2^62 count was not refused")


def check_bundle(raw: bytes) -> None:
    def read_at(offset: int, n: int) -> bytes:
        assert 0 <= offset and 0 <= n <= len(raw)  # never asked for more than the bundle holds
        return raw[offset : offset + n]

    try:
        entries = bundle.parse_bundle_index(read_at, len(raw))
    except ProtocolError:
        return
    end = bundle.COUNT_SIZE + bundle.ENTRY_SIZE * len(entries)
    for entry in entries:
        assert entry.offset == end and entry.offset + entry.size <= len(raw) and b64url.is_id(entry.id)
        end += entry.size
        check_item(raw[entry.offset : entry.offset + entry.size])


@FUZZ
@given(st.binary(max_size=1024))
def test_arbitrary_bytes_as_a_bundle(raw):
    check_bundle(raw)


@FUZZ
@given(mutated([VALID_BUNDLE]))
def test_mutated_valid_bundle(raw):
    check_bundle(raw)


@FUZZ
@given(st.sampled_from([2**62, 2**255, 2**32, 5]), st.integers(0, 2**64), st.binary(max_size=200))
def test_claimed_huge_bundle_counts_and_sizes(count, first_size, rest):
    check_bundle(count.to_bytes(32, "little") + first_size.to_bytes(32, "little") + bytes(32) + rest)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
TX_FIELDS = list(MAINNET_TX) + ["denomination"]
TX_FIELD_VALUES = (
    JSON_VALUES
    | st.sampled_from(["", "0", "1", "2", "01", "-1", "9" * 30, "9" * 5000, "²", "AA", "AAA", "A" * 43, "A" * 64])
    | st.sampled_from([v for doc in VALID_TXS for v in doc.values()])
)


def check_tx_json(doc) -> None:
    try:
        tx = Transaction.from_json(doc)
    except ProtocolError:
        return
    assert Transaction.from_json(tx.to_json()) == tx  # what parses, serializes back to the same tx
    try:
        verify(tx)
    except InvalidSignature:
        pass


@FUZZ
@given(JSON_VALUES)
def test_arbitrary_json_as_a_tx(doc):
    check_tx_json(doc)


@FUZZ
@given(st.dictionaries(st.sampled_from(TX_FIELDS), TX_FIELD_VALUES, max_size=len(TX_FIELDS)))
def test_arbitrary_tx_fields(doc):
    check_tx_json(doc)


@FUZZ
@given(st.sampled_from(VALID_TXS), st.sampled_from(TX_FIELDS), TX_FIELD_VALUES, st.booleans())
def test_mutated_valid_tx_json(doc, field, value, drop):
    changed = dict(doc)
    if drop:
        changed.pop(field, None)
    else:
        changed[field] = value
    check_tx_json(changed)


@FUZZ
@given(st.sampled_from(VALID_TXS), st.sampled_from(["owner", "signature", "data_root", "last_tx", "target"]), st.data())
def test_valid_tx_with_a_mutated_binary_field(doc, field, data):
    raw = b64url.decode(doc[field]) if doc.get(field) else b""
    changed = dict(doc, **{field: b64url.encode(data.draw(mutated([raw]) if raw else st.binary(max_size=80)))})
    check_tx_json(changed)


PROOF_DATA = bytes(range(256)) * 2500  # 640,000 bytes: three chunks
PROOF_CHUNKS = merkle.chunks_for(PROOF_DATA)
PROOF_ROOT = merkle.compute_root(PROOF_CHUNKS)
PROOFS = merkle.build_proofs(PROOF_CHUNKS)


def check_path(offset: int, size: int, path: bytes) -> None:
    try:
        proven = merkle.validate_path(PROOF_ROOT, offset, 0, size, path)
    except InvalidProof:
        return
    assert 0 <= proven.left_bound < proven.right_bound and proven.chunk_size == proven.right_bound - proven.left_bound


@FUZZ
@given(st.integers(-(2**70), 2**70), st.integers(-10, 2**70), mutated([proof.proof for proof in PROOFS]))
def test_mutated_data_paths(offset, size, path):
    check_path(offset, size, path)


@FUZZ
@given(st.integers(0, len(PROOF_DATA)), st.binary(max_size=400))
def test_arbitrary_data_paths(offset, path):
    check_path(offset, len(PROOF_DATA), path)


def test_the_valid_inputs_are_valid():
    """The seeds the mutations start from parse and verify (else the fuzz would test nothing)."""
    for item in VALID_ITEMS:
        ans104.verify_item(item)
    assert len(bundle.parse_bundle_index(lambda o, n: VALID_BUNDLE[o : o + n], len(VALID_BUNDLE))) == 3
    for doc in VALID_TXS:
        verify(Transaction.from_json(doc))
    for proof in PROOFS:
        merkle.validate_path(PROOF_ROOT, proof.offset, 0, len(PROOF_DATA), proof.proof)
    try:
        Transaction.from_json(dict(MAINNET_TX, quantity="9" * 5000))
    except LimitExceeded:
        pass
    else:
        raise AssertionError("a 5,000-digit quantity was accepted")
    try:
        Transaction.from_json(dict(MAINNET_TX, format="²"))
    except MalformedData:
        pass
    else:
        raise AssertionError("format '²' was accepted")
