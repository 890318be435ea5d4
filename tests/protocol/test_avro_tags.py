import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from permastore.protocol.avro_tags import (
    MAX_NAME_BYTES,
    MAX_TAGS,
    MAX_VALUE_BYTES,
    _encode_bytes,
    _encode_long,
    decode_tags,
    encode_tags,
)
from permastore.protocol.errors import LimitExceeded, MalformedData
from permastore.protocol.tags import Tag

tags_strategy = st.lists(
    st.builds(Tag, st.binary(min_size=1, max_size=40), st.binary(min_size=1, max_size=80)), max_size=20
)


@settings(deadline=None)  # a shared, loaded machine must not turn slowness into failures
@given(tags_strategy)
def test_round_trip(tags):
    assert decode_tags(encode_tags(tags)) == tags


def test_known_encoding():
    # count 1 -> zigzag 2; "a" -> len 1 -> zigzag 2; terminating 0.
    assert encode_tags([Tag(b"a", b"bc")]) == b"\x02\x02a\x04bc\x00"
    assert encode_tags([]) == b""
    assert decode_tags(b"") == []
    assert decode_tags(b"\x00") == []


def _negative_blocks(blocks):
    out = b""
    for block in blocks:
        body = b"".join(_encode_bytes(t.name) + _encode_bytes(t.value) for t in block)
        out += _encode_long(-len(block)) + _encode_long(len(body)) + body
    return out + _encode_long(0)


@settings(deadline=None)  # a shared, loaded machine must not turn slowness into failures
@given(st.lists(tags_strategy.filter(bool), min_size=1, max_size=4))
def test_negative_block_counts(blocks):
    flat = [t for block in blocks for t in block]
    assert decode_tags(_negative_blocks(blocks)) == flat


def test_mixed_positive_and_negative_blocks():
    a, b = Tag(b"n1", b"v1"), Tag(b"n2", b"v2")
    positive = _encode_long(1) + _encode_bytes(a.name) + _encode_bytes(a.value)
    assert decode_tags(positive + _negative_blocks([[b]])) == [a, b]


@pytest.mark.parametrize(
    "buf",
    [
        b"\x02\x02a",  # ends inside a value
        b"\x02\x02a\x04bc",  # no terminating zero
        b"\x02\x02a\x04bc\x00\x00",  # stray byte
        b"\x02\x01",  # negative length
        b"\x01\x10\x02a\x04bc\x00",  # negative block whose size disagrees
        b"\xff" * 11,  # endless varint
    ],
)
def test_malformed_rejected(buf):
    with pytest.raises(MalformedData):
        decode_tags(buf)


@pytest.mark.parametrize(
    "tags",
    [
        [Tag(b"n", b"v")] * (MAX_TAGS + 1),
        [Tag(b"n" * (MAX_NAME_BYTES + 1), b"v")],
        [Tag(b"n", b"v" * (MAX_VALUE_BYTES + 1))],
        [Tag(b"", b"v")],
        [Tag(b"n", b"")],
    ],
)
def test_limits_on_encode(tags):
    with pytest.raises(LimitExceeded) as info:
        encode_tags(tags)
    assert "tag" in str(info.value)


def test_limits_at_the_edge_are_fine():
    tags = [Tag(b"n" * MAX_NAME_BYTES, b"v" * MAX_VALUE_BYTES)] * MAX_TAGS
    assert decode_tags(encode_tags(tags)) == tags


def test_limits_on_decode():
    too_many = _encode_long(MAX_TAGS + 1) + (_encode_bytes(b"n") + _encode_bytes(b"v")) * (MAX_TAGS + 1)
    with pytest.raises(LimitExceeded):
        decode_tags(too_many + b"\x00")
    long_name = _encode_long(1) + _encode_bytes(b"n" * (MAX_NAME_BYTES + 1)) + _encode_bytes(b"v") + b"\x00"
    with pytest.raises(LimitExceeded):
        decode_tags(long_name)
    # A huge declared length is refused before any slicing.
    with pytest.raises(LimitExceeded):
        decode_tags(_encode_long(1) + _encode_long(2**40))
