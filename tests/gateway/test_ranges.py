"""Range header parsing (gateway.ranges)."""

import pytest
from hypothesis import given, strategies as st

from gateway.ranges import ByteRange, Unsatisfiable, parse_range


@pytest.mark.parametrize(
    "header, size, expected",
    [
        (None, 10, None),
        ("bytes=0-4", 10, ByteRange(0, 5)),
        ("bytes=5-", 10, ByteRange(5, 10)),
        ("bytes=-3", 10, ByteRange(7, 10)),
        ("bytes=-30", 10, ByteRange(0, 10)),
        ("bytes=2-100", 10, ByteRange(2, 10)),
        ("bytes=9-9", 10, ByteRange(9, 10)),
        ("items=0-4", 10, None),
        ("bytes=0-1,4-5", 10, None),
        ("bytes=5-2", 10, None),
        ("bytes=a-b", 10, None),
        ("bytes=-", 10, None),
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header, size", [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable(header, size):
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def test_content_range():
    assert ByteRange(0, 5).content_range(10) == "bytes 0-4/10"


@given(st.text(max_size=40), st.integers(min_value=0, max_value=10**12))
def test_any_header_gives_a_range_inside_the_object_or_none(header, size):
    try:
        result = parse_range(header, size)
    except Unsatisfiable:
        return
    if result is not None:
        assert 0 <= result.start < result.end <= size
