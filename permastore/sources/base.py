"""The data source interface: given an ID (and a byte range), a stream of its bytes."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Protocol

from permastore.store.errors import StoreError


class UpstreamError(StoreError):
    """An upstream could not give what was asked (network, HTTP status, or bytes refused)."""


class DataStream:
    """The bytes of one object, or of a range of it: iterate for them.

    ``size`` is the number of bytes this stream yields (None when the upstream did
    not say), ``total_size`` the whole object's size when known. ``verified`` says
    whether every byte was checked against the object's signature / data_root.
    """

    def __init__(
        self,
        id: str,
        pieces: Iterable[bytes],
        size: int | None,
        content_type: str | None = None,
        total_size: int | None = None,
        verified: bool = True,
    ):
        self.id = id
        self._pieces = iter(pieces)
        self.size = size
        self.content_type = content_type
        self.total_size = total_size
        self.verified = verified

    def __iter__(self) -> Iterator[bytes]:
        return self._pieces

    def read_all(self) -> bytes:
        """Return every remaining byte (for small objects)."""
        return b"".join(self._pieces)

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close:
            close()


class DataSource(Protocol):
    """Anything that can stream an object's bytes by ID."""

    def get(self, id: str, start: int = 0, end: int | None = None) -> DataStream: ...


class IterReader(io.RawIOBase):
    """A binary file-like ``read(n)`` over an iterator of byte pieces (to feed Store.put_*)."""

    def __init__(self, pieces: Iterable[bytes]):
        self._pieces = iter(pieces)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        """Return n bytes (fewer only at the end), gathering pieces as they come."""
        if n is None or n < 0:
            out, self._rest = self._rest + b"".join(self._pieces), b""
            return out
        if len(self._rest) >= n:
            out, self._rest = self._rest[:n], self._rest[n:]
            return out
        parts, size = [self._rest], len(self._rest)
        while size < n:
            piece = next(self._pieces, None)
            if piece is None:
                break
            parts.append(piece)
            size += len(piece)
        data = b"".join(parts)
        out, self._rest = data[:n], data[n:]
        return out
