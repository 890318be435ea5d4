"""ReadThroughSource and FallbackSource: fetch what is missing, verify it, keep it, serve it.

ReadThroughSource never passes on an upstream byte directly. A missing object is
fetched whole into the store first, and the store refuses it unless it verifies:
- an L1 tx: its signature (before any byte is written), then its data against the
  signed data_root and data_size (before the index commit);
- a data item: its signature over the deep-hash of the data, streamed;
- a data item known only as part of a bundle: the bundle is fetched (verified as
  above) and unbundled, which verifies each item inside.
Then the bytes are served from the store, which checks each chunk's BLAKE3 on read.
"""

from __future__ import annotations

import logging
import threading

from permastore.protocol import ans104
from permastore.protocol.errors import ProtocolError
from permastore.sources.base import DataStream, IterReader, UpstreamError
from permastore.sources.local import LocalSource
from permastore.store.errors import NotFound, StoreError
from permastore.store.ingest import PrefixedStream

log = logging.getLogger(__name__)

MAX_PARENT_DEPTH = 8


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
    """Given an inner (upstream) source and a Store, serve from the store, filling it from upstream."""

    def __init__(self, inner, store):
        self.inner = inner
        self.store = store
        self.local = LocalSource(store)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def upstreams(self) -> list:
        return list(self.inner.sources) if isinstance(self.inner, FallbackSource) else [self.inner]

    def get(self, id: str, start: int = 0, end: int | None = None) -> DataStream:
        """Given an ID and a range, return verified bytes: local, or fetched, verified and stored first."""
        try:
            return self.local.get(id, start, end)  # the common case: one index lookup
        except NotFound:
            pass
        with self._lock_for(id):  # one download per ID, however many ask at once
            if not self._held(id):
                self.fetch(id)
        return self.local.get(id, start, end)

    def _held(self, id: str) -> bool:
        info = self.store.info(id)
        return info is not None and info.data_complete

    def _lock_for(self, id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(id, threading.Lock())

    def fetch_header(self, id: str) -> None:
        """Given an L1 tx ID, store its verified header (data pending) from the first upstream that has it.

        Anything else (a data item, whose header proves nothing without its data) is fetched whole.
        """
        if self.store.info(id) is not None:
            return
        for upstream in self.upstreams():
            if not hasattr(upstream, "tx_header"):
                continue
            try:
                tx = upstream.tx_header(id)
            except (StoreError, ProtocolError, ValueError) as exc:
                log.warning("header of %s from %r refused: %s", id, upstream, exc)
                continue
            if tx is not None and tx.id == id:
                try:
                    self.store.put_tx(tx, None)
                    return
                except (StoreError, ProtocolError) as exc:
                    log.warning("header of %s from %r refused: %s", id, upstream, exc)
        with self._lock_for(id):
            if not self._held(id):
                self.fetch(id)

    def fetch(self, id: str, depth: int = 0) -> None:
        """Given an ID, store it verified from the first upstream that can prove it; raise otherwise."""
        errors = []
        for upstream in self.upstreams():
            try:
                if self._fetch_from(upstream, id, depth):
                    return
            except NotFound:
                continue
            except (StoreError, ProtocolError, ValueError) as exc:
                # Wrong bytes or a broken transfer: refused; another upstream may do better.
                log.warning("read-through of %s from %r refused: %s", id, upstream, exc)
                errors.append(f"{upstream!r}: {exc}")
        if errors:
            raise UpstreamError(f"{id} could not be fetched and verified: " + "; ".join(errors))
        raise NotFound(id, "object (here or upstream)")

    def _fetch_from(self, upstream, id: str, depth: int) -> bool:
        """Try the ways one upstream can prove an object; return True once it is stored."""
        if not hasattr(upstream, "tx_header"):  # a plain DataSource cannot prove anything
            return False
        tx = upstream.tx_header(id)
        if tx is not None:
            if tx.id != id:
                raise UpstreamError(f"upstream answered /tx/{id} with tx {tx.id}")
            # The verified header is kept first: it stands even if the data cannot be had.
            info = self.store.put_tx(tx, None)  # verifies the signature (and the size limit)
            if not info.data_complete:
                info = self.store.put_tx(tx, IterReader(upstream.get(id, 0, tx.data_size)))  # checks data_root
            return info.data_complete
        header = upstream.item_header(id)
        if header is not None:
            parsed = ans104.parse_header(header)
            if parsed.id != id:
                raise UpstreamError(f"upstream answered item {id} with the header of {parsed.id}")
            data = IterReader(_declared(upstream.get(id)))
            self.store.put_item(PrefixedStream(header[: parsed.header_size], data))  # verifies signature
            return True
        parent = upstream.parent_of(id)
        if parent is not None and depth < MAX_PARENT_DEPTH:
            if not self._held(parent):
                self.fetch(parent, depth + 1)
            # Unbundling the verified parent indexes the item only if it verified too.
            if self.store.info(id) is None:
                raise UpstreamError(f"bundle {parent} does not hold a valid item {id}")
            return True
        # Last resort (arlocal): the header rebuilt from GraphQL fields; put_item checks its signature.
        rebuilt = upstream.item_header_from_fields(id) if hasattr(upstream, "item_header_from_fields") else None
        if rebuilt is not None:
            data = IterReader(_declared(upstream.get(id)))
            info = self.store.put_item(PrefixedStream(rebuilt, data))
            if info.id != id:
                raise UpstreamError(f"upstream fields for item {id} rebuild item {info.id}")
            return True
        return False


def _declared(stream: DataStream) -> DataStream:
    """Given an upstream's data stream of an item, return it if it declares its length, else refuse it.

    An item's header does not say how long its data is: without a declared length an
    upstream could stream forever, so such an answer is refused before a byte is read.
    """
    if stream.size is None:
        stream.close()
        raise UpstreamError(f"{stream.id}: the upstream declared no length for the item's data")
    return stream
