"""Arweave deep-hash (SHA-384), as in arweave-js ``deepHash``.

    blob:  H( H("blob" + len) + H(bytes) )
    list:  acc = H("list" + len); for item: acc = H(acc + deep_hash(item))

where ``len`` is the decimal length written as ASCII. A blob's own content is
hashed once, so ``BlobHasher`` can stream a multi-GB blob in one SHA-384 pass
and hand the result to ``deep_hash_list`` as ``Prehashed``.
"""

import hashlib
from dataclasses import dataclass

from .errors import MalformedData

DIGEST_SIZE = 48


def _sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


def _blob_tag_hash(length: int) -> bytes:
    return _sha384(b"blob" + str(length).encode("ascii"))


@dataclass(frozen=True)
class Prehashed:
    """A blob's deep-hash computed earlier (48 bytes), used in place of the blob in a list."""

    digest: bytes

    def __post_init__(self):
        if len(self.digest) != DIGEST_SIZE:
            raise MalformedData(f"prehashed deep-hash must be {DIGEST_SIZE} bytes, got {len(self.digest)}")


class BlobHasher:
    """Streaming deep-hash of one blob: ``update`` in pieces, ``digest`` equals ``deep_hash(blob)``."""

    def __init__(self):
        self._content = hashlib.sha384()
        self._length = 0

    def update(self, data: bytes) -> None:
        """Given the next piece of the blob, fold it into the hash."""
        self._content.update(data)
        self._length += len(data)

    @property
    def length(self) -> int:
        return self._length

    def digest(self) -> bytes:
        """Return the 48-byte deep-hash of all bytes given so far."""
        return _sha384(_blob_tag_hash(self._length) + self._content.digest())


def deep_hash(value) -> bytes:
    """Given bytes, a Prehashed, or a (nested) list of them, return its 48-byte deep-hash."""
    if isinstance(value, Prehashed):
        return value.digest
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _sha384(_blob_tag_hash(len(data)) + _sha384(data))
    if isinstance(value, (list, tuple)):
        return deep_hash_list(value)
    raise MalformedData(f"deep-hash takes bytes or lists, got {type(value).__name__}")


def deep_hash_list(items) -> bytes:
    """Given a list whose items are bytes, lists or Prehashed blob hashes, return its deep-hash."""
    acc = _sha384(b"list" + str(len(items)).encode("ascii"))
    for item in items:
        acc = _sha384(acc + deep_hash(item))
    return acc
