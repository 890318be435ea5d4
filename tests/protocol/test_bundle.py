import hashlib

import pytest

from permastore.protocol import ans104, bundle
from permastore.protocol.errors import MalformedData
from permastore.protocol.signers import Ed25519Signer, EthereumSigner
from permastore.protocol.tags import Tag

GOAR_IDS = ["gJAcqxkJIatZHwB3R4wI8Fsmg5eGwI-AjTZ3kWDx3sc", "eR75mpfjPGU80Smo74_UIzy462c9cQwBxRjxsd_Zux0"]


def _reader(data):
    return lambda offset, n: data[offset : offset + n]


def test_goar_bundle(arweave_vectors):
    data = (arweave_vectors / "goar" / "bundleData").read_bytes()
    entries = bundle.parse_bundle_index(_reader(data), len(data))
    assert [e.id for e in entries] == GOAR_IDS
    for entry, name in zip(entries, ["test.item", "test2.item"]):
        item = data[entry.offset : entry.offset + entry.size]
        assert item == (arweave_vectors / "goar" / name).read_bytes()
        assert ans104.verify_item(item).id == entry.id
    rebuilt = bundle.build_bundle([(arweave_vectors / "goar" / n).read_bytes() for n in ["test.item", "test2.item"]])
    assert rebuilt == data


def test_nested_bundles():
    inner_signer = EthereumSigner(hashlib.sha256(b"inner").digest())
    outer_signer = Ed25519Signer(hashlib.sha256(b"outer").digest())
    leaves = [ans104.build_item(inner_signer, f"leaf {i}".encode(), [Tag(b"i", str(i).encode())]) for i in range(3)]
    inner_bundle = bundle.build_bundle(leaves)
    bundle_tags = [Tag(b"Bundle-Format", b"binary"), Tag(b"Bundle-Version", b"2.0.0")]
    wrapper = ans104.build_item(outer_signer, inner_bundle, bundle_tags)
    plain = ans104.build_item(outer_signer, b"plain", [])
    outer = bundle.build_bundle([plain, wrapper])

    entries = bundle.parse_bundle_index(_reader(outer), len(outer))
    assert len(entries) == 2
    wrapper_entry = entries[1]
    wrapper_header = ans104.verify_item(outer[wrapper_entry.offset : wrapper_entry.offset + wrapper_entry.size])
    data_start = wrapper_entry.offset + wrapper_header.header_size
    data_size = wrapper_entry.size - wrapper_header.header_size
    # Read the inner bundle in place, by offsets within the outer bytes.
    inner_entries = bundle.parse_bundle_index(lambda o, n: outer[data_start + o : data_start + o + n], data_size)
    assert [e.id for e in inner_entries] == [ans104.parse_header(leaf).id for leaf in leaves]
    for i, entry in enumerate(inner_entries):
        start = data_start + entry.offset
        header, data = ans104.parse_item(outer[start : start + entry.size])
        ans104.verify_item(outer[start : start + entry.size])
        assert data == f"leaf {i}".encode()


def test_empty_bundle():
    empty = bundle.build_bundle([])
    assert empty == bytes(32)
    assert bundle.parse_bundle_index(_reader(empty), len(empty)) == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(31),
        (1).to_bytes(32, "little"),  # one item declared, no index row
        (2**200).to_bytes(32, "little") + bytes(64),  # absurd count
        (1).to_bytes(32, "little") + (10).to_bytes(32, "little") + bytes(32) + bytes(5),  # item runs past end
    ],
)
def test_malformed_bundles(data):
    with pytest.raises(MalformedData):
        bundle.parse_bundle_index(_reader(data), len(data))


def test_short_reader_is_malformed(arweave_vectors):
    data = (arweave_vectors / "goar" / "bundleData").read_bytes()
    with pytest.raises(MalformedData):
        bundle.parse_bundle_index(_reader(data[:100]), len(data))
