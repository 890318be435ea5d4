"""Path parameters checked before they reach the store: bad ones are 400s, not lookups."""

from __future__ import annotations

from gateway.errors import bad_request
from permastore.protocol import b64url

MAX_OFFSET_DIGITS = 40  # weave offsets fit far below this; longer strings are not offsets
MAX_SQL_INTEGER = 2**63 - 1  # SQLite's INTEGER: anything the store looks up must fit


def parse_id(text: str, what: str = "ID") -> str:
    """Given a path segment, return it as an ID or raise a 400 saying why not."""
    if not b64url.is_id(text):
        raise bad_request(f"invalid {what}: expected 43 base64url characters")
    return text


def parse_address(text: str) -> str:
    """Given a path segment, return it as a wallet address (an ID-shaped string) or raise 400."""
    return parse_id(text, "wallet address")


def parse_uint(text: str, what: str, maximum: int | None = None) -> int:
    """Given a path segment, return a non-negative decimal integer (at most maximum) or raise a 400."""
    if not (0 < len(text) <= MAX_OFFSET_DIGITS) or not text.isascii() or not text.isdigit():
        raise bad_request(f"invalid {what}: expected a non-negative integer")
    value = int(text)
    if maximum is not None and value > maximum:
        raise bad_request(f"invalid {what}: at most {maximum}")
    return value
