"""What inference needs of the store and of a data source, declared (permastore's Store and
ReadThroughSource satisfy these)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Protocol

from permastore.protocol.signers import Signer
from permastore.store.records import ObjectInfo, Page, Query


class InferenceStore(Protocol):
    """The store calls are recorded into and models are read from."""

    root: Path  # the data folder

    @property
    def signer(self) -> Signer: ...

    def info(self, id: str) -> ObjectInfo | None: ...

    def read(self, id: str, start: int = 0, end: int | None = None) -> Iterator[bytes]: ...

    def raw_header(self, id: str) -> bytes: ...

    def object_path(self, id: str, verify: bool = True) -> Path: ...

    def put_item(self, stream: IO[bytes] | bytes, progress: Callable[[int], object] | None = None) -> ObjectInfo: ...

    def put_data(self, stream: IO[bytes], tags: list, content_type: str | None = None, *,
                 progress: Callable[[int], object] | None = None) -> ObjectInfo: ...

    def query(self, q: Query) -> Page: ...


class StoringSource(Protocol):
    """A source that fetches an object from elsewhere, verifies it and stores it (ReadThroughSource)."""

    def fetch(self, id: str) -> None: ...
