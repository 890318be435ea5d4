import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from permastore.protocol.deephash import BlobHasher, Prehashed, deep_hash, deep_hash_list
from permastore.protocol.errors import MalformedData


def _h(b):
    return hashlib.sha384(b).digest()


def test_blob_definition():
    data = b"hello"
    assert deep_hash(data) == _h(_h(b"blob5") + _h(data))


def test_list_definition():
    inner = [b"a", b"bc"]
    acc = _h(b"list2")
    for item in inner:
        acc = _h(acc + deep_hash(item))
    assert deep_hash(inner) == acc
    assert deep_hash([]) == _h(b"list0")


def test_nested_list_differs_from_flat():
    assert deep_hash([b"a", [b"b"]]) != deep_hash([b"a", b"b"])
    assert deep_hash([b"ab"]) != deep_hash(b"ab")


@settings(deadline=None)  # a shared, loaded machine must not turn slowness into failures
@given(st.binary(max_size=5000), st.lists(st.integers(min_value=0, max_value=5000), max_size=5))
def test_blob_hasher_matches_any_split(data, cuts):
    hasher = BlobHasher()
    points = sorted({0, len(data), *[c % (len(data) + 1) for c in cuts]})
    for start, end in zip(points, points[1:]):
        hasher.update(data[start:end])
    assert hasher.digest() == deep_hash(data)
    assert hasher.length == len(data)


def test_prehashed_in_list_equals_blob():
    data = b"x" * 100_000
    hasher = BlobHasher()
    hasher.update(data)
    items = [b"dataitem", b"1", [b"t", b"v"], data]
    prehashed = items[:-1] + [Prehashed(hasher.digest())]
    assert deep_hash_list(prehashed) == deep_hash(items)


def test_bad_inputs():
    with pytest.raises(MalformedData):
        deep_hash("text")
    with pytest.raises(MalformedData):
        Prehashed(b"short")
