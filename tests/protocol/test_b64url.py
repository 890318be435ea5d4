import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from permastore.protocol import b64url
from permastore.protocol.errors import InvalidId, MalformedData, ProtocolError


@settings(deadline=None)  # a shared, loaded machine must not turn slowness into failures
@given(st.binary(max_size=200))
def test_round_trip(data):
    text = b64url.encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url.decode(text) == data


@pytest.mark.parametrize(
    "text",
    [
        "AA==",  # padding
        "ab+c",  # standard alphabet
        "ab/c",
        "ab c",  # whitespace
        "abcd\n",
        "A",  # impossible length
        "AB",  # non-zero spare bits: canonical form of b"\x00" is "AA"
        "AAB",  # ditto for two bytes
        "é",
    ],
)
def test_decode_rejects_non_canonical(text):
    with pytest.raises(MalformedData):
        b64url.decode(text)


def test_decode_rejects_non_string():
    with pytest.raises(MalformedData):
        b64url.decode(b"AAAA")


def test_parse_id():
    raw = bytes(range(32))
    text = b64url.encode(raw)
    assert len(text) == 43
    assert b64url.parse_id(text) == raw
    assert b64url.is_id(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A" * 42,
        "A" * 44,
        "A" * 42 + "B",  # 43 chars but non-canonical last char
        "A" * 42 + "=",
        "A" * 42 + "+",
        None,
        12,
    ],
)
def test_parse_id_rejects(text):
    with pytest.raises(InvalidId):
        b64url.parse_id(text)
    assert not b64url.is_id(text)


def test_errors_are_value_errors():
    assert issubclass(InvalidId, ProtocolError)
    assert issubclass(ProtocolError, ValueError)
