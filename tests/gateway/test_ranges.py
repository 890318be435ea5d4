"""Range header parsing (gateway.ranges): one range, several, malformed and huge ones; hypothesis fuzz."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ranges import MAX_RANGES, ByteRange, Unsatisfiable, parse_range, parse_ranges


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
        ("BYTES = 1 - 2 ", 10, ByteRange(1, 3)),
        ("items=0-4", 10, None),  # a unit we do not know: the whole object
        ("bytes=0-1,4-5", 10, None),  # several ranges are parse_ranges' business
        ("bytes=0-4,", 10, ByteRange(0, 5)),  # empty list elements are allowed (RFC 9110 5.6.1)
        ("bytes=0-" + "9" * 5000, 10, ByteRange(0, 10)),  # a 5,000-digit end is just "to the end"
        ("bytes=-" + "9" * 5000, 10, ByteRange(0, 10)),
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header, size",
    [
        ("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0),
        ("bytes=" + "9" * 5000 + "-", 10),  # starts past any end
        ("bytes=" + "9" * 5000 + "-" + "9" * 5000, 10),
        ("bytes=5-2", 10), ("bytes=a-b", 10), ("bytes=-", 10), ("bytes=", 10), ("bytes=1-2-3", 10),
        ("bytes=\xb2-3", 10), ("bytes=0-\xb2", 10), ("bytes=-\u0663", 10),  # non-ASCII digits are not digits here
        ("bytes=20-30,40-50", 10),  # none of several overlaps the object
    ],
)  # fmt: skip
def test_unsatisfiable_and_malformed_are_416(header, size):
    with pytest.raises(Unsatisfiable):
        parse_ranges(header, size)


def test_several_ranges_in_the_order_asked():
    assert parse_ranges("bytes=0-9,20-29", 100) == [ByteRange(0, 10), ByteRange(20, 30)]
    assert parse_ranges("bytes=50-59, 0-0, -5", 100) == [ByteRange(50, 60), ByteRange(0, 1), ByteRange(95, 100)]
    assert parse_ranges("bytes=0-9,200-300", 100) == [ByteRange(0, 10)]  # the unsatisfiable one is dropped


def test_overlapping_or_too_many_ranges_send_the_whole_object():
    assert parse_ranges("bytes=0-9,5-14", 100) is None
    assert parse_ranges("bytes=-10,85-", 100) is None
    many = ",".join(f"{n}-{n}" for n in range(0, 2 * (MAX_RANGES + 1), 2))
    assert parse_ranges(f"bytes={many}", 1000) is None


def test_content_range():
    assert ByteRange(0, 5).content_range(10) == "bytes 0-4/10"


def reference(header: str, size: int):
    """A slow, obviously right model of the rules, for the fuzz test below."""
    unit, eq, spec = header.strip(" \t").partition("=")
    if not eq or unit.strip(" \t").lower() != "bytes":
        return None
    specs = [p.strip(" \t") for p in spec.split(",") if p.strip(" \t")]
    if not specs:
        return "416"
    if len(specs) > MAX_RANGES:
        return None
    found = []
    for part in specs:
        m = re.fullmatch(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)", part, re.ASCII)
        if m is None or not any(m.groups()):
            return "416"
        first, last = m.groups()
        if first == "":
            n = int(last)
            if n > 0 and size > 0:
                found.append(ByteRange(max(0, size - n), size))
            continue
        start = int(first)
        if last != "" and int(last) < start:
            return "416"
        if start < size:
            found.append(ByteRange(start, size if last == "" else min(int(last) + 1, size)))
    if not found:
        return "416"
    ordered = sorted(found, key=lambda r: r.start)
    if any(b.start < a.end for a, b in zip(ordered, ordered[1:])):
        return None
    return found


positions = st.one_of(st.integers(0, 300).map(str), st.just(""), st.integers(0, 10**30).map(str), st.sampled_from(["\xb2", "0x1", "+1", " 7", "1_0"]))
specs = st.builds(lambda a, sep, b: f"{a}{sep}{b}", positions, st.sampled_from(["-", " - ", "--", ""]), positions)
headers = st.one_of(
    st.text(max_size=40),
    st.builds(lambda unit, parts: unit + ",".join(parts), st.sampled_from(["bytes=", "Bytes =", "bytes", "items=", "bytes= "]), st.lists(specs, max_size=MAX_RANGES + 3)),
)


@settings(max_examples=400, deadline=None)
@given(headers, st.integers(min_value=0, max_value=400))
def test_fuzz_against_the_reference_model(header, size):
    try:
        got = parse_ranges(header, size)
    except Unsatisfiable:
        got = "416"
    assert got == reference(header, size)
    if isinstance(got, list):
        assert all(0 <= r.start < r.end <= size for r in got)
