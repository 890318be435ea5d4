"""LocalSource: objects already in this node's store (verified by the store on read)."""

from __future__ import annotations

from permastore.sources.base import DataStream
from permastore.store.errors import NotFound


class LocalSource:
    """Given a Store, serve what it holds completely."""

    def __init__(self, store):
        self.store = store

    def get(self, id: str, start: int = 0, end: int | None = None) -> DataStream:
        """Given an ID and a range, return a stream of its verified bytes; NotFound if not held whole."""
        info = self.store.info(id)
        if info is None or not info.data_complete:
            raise NotFound(id)
        stop = info.data_size if end is None else min(end, info.data_size)
        begin = min(start, stop)
        return DataStream(
            id, self.store.read(id, begin, stop), stop - begin, info.content_type, total_size=info.data_size
        )
