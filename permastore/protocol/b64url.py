"""Strict base64url (RFC 4648 section 5, no padding), as Arweave uses for every binary field.

Strict means one spelling per byte string: no ``=`` padding, no ``+``/``/``,
no whitespace, and the unused low bits of the last character must be zero.
"""

import base64
import re

from .errors import InvalidId, MalformedData

ID_BYTES = 32
ID_CHARS = 43

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*\Z")


def encode(data: bytes) -> str:
    """Given bytes, return their base64url text without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """Given strict base64url text, return its bytes; raise MalformedData for any other spelling."""
    if not isinstance(text, str):
        raise MalformedData(f"base64url value must be a string, got {type(text).__name__}")
    if not _ALPHABET.match(text):
        bad = next(ch for ch in text if not (ch.isascii() and (ch.isalnum() or ch in "-_")))
        raise MalformedData(f"base64url value contains invalid character {bad!r}")
    if len(text) % 4 == 1:
        raise MalformedData(f"base64url value has impossible length {len(text)}")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # Non-zero spare bits would give a second spelling of the same bytes (and a second ID).
    if encode(raw) != text:
        raise MalformedData("base64url value is not canonical (non-zero trailing bits)")
    return raw


def parse_id(text: str) -> bytes:
    """Given a 43-character base64url ID, return its 32 bytes; raise InvalidId otherwise."""
    if not isinstance(text, str) or len(text) != ID_CHARS:
        shown = text if isinstance(text, str) else type(text).__name__
        raise InvalidId(f"ID must be 43 base64url characters, got {shown!r:.60}")
    try:
        return decode(text)
    except MalformedData as exc:
        raise InvalidId(f"ID {text!r} is not valid base64url: {exc}") from None


def is_id(text: str) -> bool:
    """Given any value, return True when it is a well-formed 43-character ID."""
    try:
        parse_id(text)
    except InvalidId:
        return False
    return True
