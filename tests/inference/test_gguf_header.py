"""The fast GGUF header parser agrees with the gguf package and refuses broken headers."""

import pytest
from gguf import GGUFReader
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.gguf_header import GGUFError, parse_header

from .conftest import TINY_GGUF


def test_agrees_with_the_gguf_package():
    data = TINY_GGUF.read_bytes()
    header = parse_header(data, keep_arrays=("tokenizer.ggml.tokens", "tokenizer.ggml.scores"))
    reader = GGUFReader(str(TINY_GGUF), "r")
    assert set(header.fields) == set(reader.fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        expected = field.contents()
        if isinstance(expected, float):
            assert header.fields[name] == pytest.approx(expected)
        elif name in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores"):
            assert header.fields[name] == pytest.approx(expected) if "scores" in name else header.fields[name] == expected
        elif isinstance(expected, list):
            assert header.fields[name] is None  # arrays not asked for are skipped
        else:
            assert header.fields[name] == expected, name
    assert [(t.name, t.n_elements) for t in header.tensors] == [(t.name, int(t.n_elements)) for t in reader.tensors]


def test_truncated_headers_are_refused():
    data = TINY_GGUF.read_bytes()
    size = parse_header(data).size
    assert 1000 < size < len(data)
    assert parse_header(data[:size]).tensors
    for cut in (3, 8, 20, 34, size // 2, size - 1):
        with pytest.raises(GGUFError):
            parse_header(data[:cut])


def test_bad_magic_and_version_are_refused():
    data = bytearray(TINY_GGUF.read_bytes()[:64])
    with pytest.raises(GGUFError, match="magic"):
        parse_header(b"GGML" + bytes(data[4:]))
    data[4:8] = (99).to_bytes(4, "little")
    with pytest.raises(GGUFError, match="version 99"):
        parse_header(bytes(data))


def test_absurd_lengths_are_refused():
    data = bytearray(TINY_GGUF.read_bytes())
    # The first key's length (after magic, version, two counts) claims 2**60 bytes.
    data[24:32] = (1 << 60).to_bytes(8, "little")
    with pytest.raises(GGUFError):
        parse_header(bytes(data))


def test_deeply_nested_arrays_are_refused():
    import struct

    key = b"x"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<I", 9)
    body += (struct.pack("<I", 9) + struct.pack("<Q", 1)) * 1000  # arrays of arrays of arrays...
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body
    with pytest.raises(GGUFError, match="nested too deep"):
        parse_header(data)


HEADER = TINY_GGUF.read_bytes()[:parse_header(TINY_GGUF.read_bytes()).size]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(HEADER) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_corrupted_headers_fail_only_with_gguf_error(edits):
    data = bytearray(HEADER)
    for at, value in edits:
        data[at] = value
    try:
        parse_header(bytes(data), keep_arrays=("tokenizer.ggml.tokens",))
    except GGUFError:
        pass
