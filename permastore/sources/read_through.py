"""ReadThroughSource and FallbackSource: fetch what is missing, verify it, keep it, serve it.

ReadThroughSource never passes on an upstream byte directly: a missing object is fetched
by the node's fetch engine (``permastore.sources.engine.Fetcher``) from its upstreams as
peers, every chunk proven as it arrives (or the whole object checked when no per-chunk
proof exists), stored, and then served from the store, which checks each chunk's BLAKE3
on read. A tx's verified header is kept even when its data cannot be had.
"""

from __future__ import annotations

from permastore.protocol.errors import ProtocolError
from permastore.sources.base import DataStream, UpstreamError
from permastore.sources.local import LocalSource
from permastore.store.errors import NotFound, StoreError


class FallbackSource:
    """Given sources in order, serve from the first that has the object."""

    def __init__(self, sources):
        self.sources = list(sources)

    def get(self, id: str, start: int = 0, end: int | None = None) -> DataStream:
        """Given an ID and a range, return the first source's stream; NotFound when none has it."""
        errors = []
        for source in self.sources:
            try:
                return source.get(id, start, end)
            except NotFound:
                continue
            except (StoreError, ProtocolError) as exc:
                errors.append(f"{source!r}: {exc}")
        if errors:
            raise UpstreamError(f"{id}: every source failed: " + "; ".join(errors))
        raise NotFound(id)


class ReadThroughSource:
    """Given upstreams (an UpstreamSource, or a FallbackSource of them) and a Store, serve from the
    store, filling it through the fetch engine with the upstreams as its peers.

    ``fetcher`` (optional) is the node's own Fetcher, shared with ``serve --peer`` and ``pull``.
    """

    def __init__(self, inner, store, fetcher=None):
        self.inner = inner
        self.store = store
        self.local = LocalSource(store)
        self.fetcher = fetcher or _fetcher_over(store, self.upstreams())

    def upstreams(self) -> list:
        return list(self.inner.sources) if isinstance(self.inner, FallbackSource) else [self.inner]

    def get(self, id: str, start: int = 0, end: int | None = None) -> DataStream:
        """Given an ID and a range, return verified bytes: local, or fetched, verified and stored first."""
        try:
            return self.local.get(id, start, end)  # the common case: one index lookup
        except NotFound:
            pass
        self.fetch(id)
        return self.local.get(id, start, end)

    def fetch(self, id: str) -> None:
        """Given an ID, store it verified from the upstreams (one fetch per ID however many ask); raise otherwise."""
        self.fetcher.fetch(id)

    def fetch_header(self, id: str) -> None:
        """Given an L1 tx ID, store its verified header (its data may follow); NotFound when no upstream has one."""
        if not self.fetcher.fetch_header(id):
            raise NotFound(id, "transaction (here or upstream)")


def _fetcher_over(store, upstreams):
    """Given a store and UpstreamSources, return a Fetcher whose peers are their URLs (same limits)."""
    from permastore.sources.engine import Fetcher
    from permastore.sources.peer_set import PeerSet

    urls = [u.base_url for u in upstreams if getattr(u, "base_url", None)]
    limits = next((u.limits for u in upstreams if getattr(u, "limits", None)), None)
    return Fetcher(store, PeerSet(urls, limits))
