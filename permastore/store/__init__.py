"""The storage engine: chunked, content-addressed, crash-safe storage of Arweave objects."""

from permastore.store.errors import Conflict, CorruptChunk, DataMismatch, NotFound, StoreError
from permastore.store.query import InvalidQuery
from permastore.store.records import Block, FsckReport, ObjectInfo, Page, Query, WeaveChunk
from permastore.store.store import Store

__all__ = [
    "Block",
    "Conflict",
    "CorruptChunk",
    "DataMismatch",
    "FsckReport",
    "InvalidQuery",
    "NotFound",
    "ObjectInfo",
    "Page",
    "Query",
    "Store",
    "StoreError",
    "WeaveChunk",
]
