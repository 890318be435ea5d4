"""Data sources (ar-io style): resolve an ID to verified bytes, locally or through upstreams.

    LocalSource(store)                 what this node holds (verified by the store on read)
    UpstreamSource(base_url)           another node / arlocal / gateway over HTTP (unverified)
    ReadThroughSource(inner, store)    fetch + verify + store missing objects, then serve
    FallbackSource([sources])          the first source that has the object
"""

from permastore.sources.base import DataSource, DataStream, IterReader, UpstreamError
from permastore.sources.local import LocalSource
from permastore.sources.read_through import FallbackSource, ReadThroughSource
from permastore.sources.upstream import UpstreamSource

__all__ = [
    "DataSource",
    "DataStream",
    "FallbackSource",
    "IterReader",
    "LocalSource",
    "ReadThroughSource",
    "UpstreamError",
    "UpstreamSource",
]
