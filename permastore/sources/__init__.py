"""Data sources (ar-io style): resolve an ID to verified bytes, locally or through upstreams.

    LocalSource(store)                 what this node holds (verified by the store on read)
    UpstreamSource(base_url)           another node / arlocal / gateway over HTTP (unverified)
    ReadThroughSource(inner, store)    fetch + verify + store missing objects, then serve
    FallbackSource([sources])          the first source that has the object
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from permastore.sources.base import DataSource, DataStream, IterReader, UpstreamError
    from permastore.sources.local import LocalSource
    from permastore.sources.read_through import FallbackSource, ReadThroughSource
    from permastore.sources.upstream import UpstreamSource

# Name -> module, imported on first use: a command that needs only a small part (the rate
# parser of `pull --max-rate`, the errors) does not pay for httpx at start-up.
_HOMES = {
    "DataSource": "base",
    "DataStream": "base",
    "IterReader": "base",
    "UpstreamError": "base",
    "LocalSource": "local",
    "FallbackSource": "read_through",
    "ReadThroughSource": "read_through",
    "UpstreamSource": "upstream",
}


def __getattr__(name: str):
    """Given a public name of the package, import its module and return it (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


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
