"""FetchPlanner: given an ID and the peers, decide how its bytes are fetched and proven.

- An L1 tx: its signed header from the first peer whose answer verifies (kept at once);
  then, from every peer in parallel, its leaf list (permastore peers) and its weave offset
  (any Arweave node or gateway). A verified leaf list lets any peer with ranged
  ``/raw/{id}`` serve runs of chunks, each checked against its leaf; peers with only an
  offset serve ``/chunk/{offset}``, each checked by its data_path. With neither, the data
  is fetched by ranges and checked against data_root when complete (``proof = 'end'``).
- A data item in a bundle (GraphQL ``bundledIn``, nested bundles followed up to an L1 tx):
  the bundle index and the item's header are read from the L1 tx's proven chunks, then the
  chunks covering the item are fetched; its signature is checked when complete.
- A data item with no L1 ancestor: its binary header (``/item/{id}/header``, else rebuilt
  from GraphQL fields), ranges from every peer, its signature checked when complete.
- Otherwise the parent bundle is fetched whole and unbundled (the store verifies each item).
"""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass

from permastore.protocol import ans104, bundle
from permastore.protocol.errors import InvalidProof, ProtocolError
from permastore.protocol.merkle import MAX_CHUNK_SIZE, chunk_ranges
from permastore.protocol.tx import Transaction
from permastore.protocol.tx import verify as verify_tx
from permastore.sources import proofs
from permastore.sources.base import UpstreamError
from permastore.sources.scheduler import Lane, Unit
from permastore.store.errors import NotFound, StoreError
from permastore.store.index import content_type_of

log = logging.getLogger(__name__)

MAX_BUNDLE_DEPTH = 8
HEADER_READ = 64 * 1024
MAX_ITEM_HEADER = 1024 * 1024


@dataclass
class FetchPlan:
    """How one object is fetched: the source tx whose chunks carry it, the units, the lanes."""

    id: str
    kind: str  # "tx" or "item"
    data_size: int
    proof: str  # "chunks": each unit proven as it arrives (servable); "end": checked when complete
    source_id: str  # the L1 tx (or, for proof "end" of an item, the item) whose bytes are asked
    source_size: int
    source_root: bytes | None
    object_start: int  # where the object's data begins in the source's data
    units: list
    lanes: list
    raw_header: bytes = b""
    bundled_in: str | None = None
    leaves: bytes | None = None
    content_type: str | None = None

    @property
    def chunk_proven(self) -> bool:
        """True when every unit is proven on arrival (against leaves or data_paths)."""
        return self.source_root is not None and (self.proof == "chunks" or self.bundled_in is not None)


@dataclass
class _TxRoute:
    """How a tx's chunks can be had: units (with leaves when known), lanes, whether they are proven."""

    tx: Transaction
    units: list
    lanes: list
    proven: bool
    leaves: bytes | None


class FetchPlanner:
    """Given the store, the peers (PeerClient), an executor and the fetcher (for whole parents), plan fetches."""

    def __init__(self, store, peers, executor, limits, fetch_whole):
        self.store = store
        self.peers = list(peers)
        self.executor = executor
        self.limits = limits
        self.fetch_whole = fetch_whole  # id -> None: fetch and store an object whole (a parent bundle)

    def plan(self, id: str) -> FetchPlan | None:
        """Given an ID, return its FetchPlan; None when it is held whole now; NotFound / UpstreamError otherwise."""
        errors: list[str] = []
        tx = self._first(lambda peer: self._verified_header(peer, id), errors)
        if tx is not None:
            return self._plan_tx(tx)
        found = self._plan_item(id, errors)
        if found is not None or self._held(id):
            return found
        if errors:
            raise UpstreamError(f"{id} could not be fetched and verified: " + "; ".join(errors[:6]))
        raise NotFound(id, "object (here or on any peer)")

    def header_only(self, id: str) -> bool:
        """Given a tx ID, store its verified header from the first peer that has it; return True if stored."""
        errors: list[str] = []
        if self._first(lambda peer: self._verified_header(peer, id), errors) is not None:
            return True
        if errors:
            raise UpstreamError(f"{id}: no verified header from the peers: " + "; ".join(errors[:6]))
        return False

    # -- asking every peer at once ---------------------------------------------------------

    def _first(self, ask, errors: list[str]):
        """Given ask(peer) -> value or None, return the first value any peer gives (asked in parallel)."""
        futures = {self.executor.submit(ask, peer): peer for peer in self.peers}
        found = None
        for future in concurrent.futures.as_completed(futures):
            try:
                value = future.result()
            except NotFound:
                continue
            except (StoreError, ProtocolError, ValueError, OSError) as exc:
                errors.append(f"{futures[future].base_url}: {exc}")
                continue
            if value is not None:
                found = value
                break
        for future in futures:
            future.cancel()
        return found

    def _all(self, ask) -> list:
        """Given ask(peer), return [(peer, value or None)] for every peer (errors count as None)."""
        futures = [(peer, self.executor.submit(ask, peer)) for peer in self.peers]
        out = []
        for peer, future in futures:
            try:
                out.append((peer, future.result()))
            except (StoreError, ProtocolError, ValueError, OSError, NotFound) as exc:
                log.info("%s: %s", peer.base_url, exc)
                out.append((peer, None))
        return out

    def _verified_header(self, peer, id: str):
        tx = peer.tx_header(id)
        if tx is None:
            return None
        if tx.id != id:
            raise UpstreamError(f"answered /tx/{id} with tx {tx.id}")
        self.store.put_tx(tx, None)  # Security: verifies the signature and the size limit, then keeps it
        return tx

    def _held(self, id: str) -> bool:
        info = self.store.info(id)
        return info is not None and info.data_complete

    # -- transactions ------------------------------------------------------------------------

    def _plan_tx(self, tx) -> FetchPlan | None:
        if self._held(tx.id):
            return None  # data inline (format 1, small), empty, or held already
        route = self._tx_route(tx)
        content_type = content_type_of(tx.tags)
        return FetchPlan(
            tx.id, "tx", tx.data_size, "chunks" if route.proven else "end", tx.id, tx.data_size, tx.data_root, 0,
            route.units, route.lanes, leaves=route.leaves, content_type=content_type,
        )  # fmt: skip

    def _tx_route(self, tx) -> _TxRoute:
        """Given a verified tx header, ask every peer for its leaf list and weave offset; return the route."""
        size, root = tx.data_size, tx.data_root

        last = chunk_ranges(size)[-1] if size % MAX_CHUNK_SIZE else chunk_ranges(size)[-2]

        def probe(peer):
            blob, offset = peer.leaves(tx.id, size), peer.tx_offset(tx.id)  # blob: a LeafAnswer or None
            if blob is None and offset is not None and offset[1] == size:
                # An offset is only worth something with the chunk route behind it (arlocal has the one,
                # not the other): one chunk is asked, and must prove itself, before the peer counts.
                try:
                    chunk, path = peer.chunk(offset[0] - size + 1 + last[1] - 1)
                    proofs.check_chunk(root, size, last[0], last[1], chunk, path)
                except (StoreError, ProtocolError, OSError) as exc:
                    log.info("%s: no usable /chunk route for %s: %s", peer.base_url, tx.id, exc)
                    offset = None
            return blob, offset

        answers = self._all(probe)
        leaves, blob = None, None
        for peer, answer in answers:
            if answer and answer[0] is not None:
                try:
                    leaves, blob = proofs.check_leaves(answer[0].blob, root, size), answer[0].blob
                    break
                except (InvalidProof, ProtocolError) as exc:
                    log.warning("%s: leaf list of %s refused: %s", peer.base_url, tx.id, exc)
        cut = [(s, e) for s, e in chunk_ranges(size) if e > s]
        units = [Unit(i, s, e, leaves[i] if leaves else None) for i, (s, e) in enumerate(cut)]
        lanes = []
        for peer, answer in answers:
            has_leaves, offset = (answer or (None, None))
            if offset is not None and offset[1] == size and has_leaves is None:
                lanes.append(Lane(peer, "chunk", weave_start=offset[0] - size + 1))
            elif leaves is not None or offset is None:
                held = has_leaves.held if has_leaves is not None else None
                lanes.append(Lane(peer, "raw", holding=None if held is None else held_units(units, held)))
        proven = leaves is not None or any(lane.mode == "chunk" for lane in lanes)
        if proven and leaves is None:
            lanes = [lane for lane in lanes if lane.mode == "chunk"]  # raw bytes with no leaf prove nothing
        return _TxRoute(tx, units, lanes, proven, blob)

    # -- data items ----------------------------------------------------------------------------

    def _plan_item(self, id: str, errors: list[str]) -> FetchPlan | None:
        parent = self._first(lambda peer: peer.parent_of(id), errors)
        if parent is not None:
            try:
                planned = self._plan_bundled(id, parent)
                if planned is not None:
                    return planned
            except (StoreError, ProtocolError) as exc:
                errors.append(f"{id} through bundle {parent}: {exc}")
        header = self._first(lambda peer: _own_header(peer.item_header(id), id), errors)
        if header is not None:
            return self._plan_standalone(id, header, errors)
        if parent is not None:
            self._fetch_parent(id, parent, errors)
            if self._held(id):
                return None
        rebuilt = self._first(lambda peer: _own_header(peer.item_header_from_fields(id), id), errors)
        if rebuilt is not None:
            return self._plan_standalone(id, rebuilt, errors)
        return None

    def _fetch_parent(self, id: str, parent: str, errors: list[str]) -> None:
        """Fetch a bundle whole; unbundling indexes the item only if it verifies too."""
        try:
            self.fetch_whole(parent)
        except (StoreError, ProtocolError) as exc:
            errors.append(f"bundle {parent}: {exc}")
            return
        if not self._held(id):
            errors.append(f"bundle {parent} does not hold a valid item {id}")

    def _plan_standalone(self, id: str, header: bytes, errors: list[str]) -> FetchPlan | None:
        size = self._first(lambda peer: peer.declared_size(id), errors)
        if size is None:
            errors.append(f"{id}: no peer declares the length of its data")
            return None
        self.limits.check_size(id, size)
        parsed = ans104.parse_header(header)
        cut = [(s, e) for s, e in chunk_ranges(size) if e > s]
        units = [Unit(i, s, e) for i, (s, e) in enumerate(cut)]
        lanes = [Lane(peer, "raw") for peer in self.peers]
        return FetchPlan(
            id, "item", size, "end", id, size, None, 0, units, lanes, raw_header=header,
            content_type=content_type_of(parsed.tags),
        )  # fmt: skip

    def _plan_bundled(self, id: str, parent: str) -> FetchPlan | None:
        """Plan an item through the chunks of the L1 tx at the root of its bundles; None if not provable so."""
        located = self._locate(id, parent, 0)
        if located is None:
            return None
        reader, start, end = located
        header = reader.read(start, min(end, start + HEADER_READ))
        size = ans104.header_size_of(header)
        if size is None and end - start > len(header):
            header = reader.read(start, min(end, start + MAX_ITEM_HEADER))
            size = ans104.header_size_of(header)
        if size is None or size > end - start:
            raise ProtocolError(f"item {id}: header does not fit in its {end - start} bytes")
        parsed = ans104.parse_header(header[:size])
        if parsed.id != id:  # Security: the bundle index must name the item's own ID
            raise ProtocolError(f"bundle index says {id} but the item there is {parsed.id}")
        route = reader.route
        data_start, data_size = start + size, end - start - size
        if data_size <= 0:
            return None  # an empty item: not worth a session; its parent path stores it
        self.limits.check_size(id, data_size)
        units = [u for u in route.units if u.end > data_start and u.start < end]
        return FetchPlan(
            id, "item", data_size, "end", route.tx.id, route.tx.data_size, route.tx.data_root, data_start,
            units, route.lanes, raw_header=header[:size], bundled_in=parent,
            content_type=content_type_of(parsed.tags),
        )  # fmt: skip

    def _locate(self, id: str, parent: str, depth: int):
        """Given an item and its parent bundle, return (reader over the root tx, start, end of the item in it)."""
        if depth >= MAX_BUNDLE_DEPTH:
            return None
        errors: list[str] = []
        tx = self._first(lambda peer: _verified_only(peer.tx_header(parent), parent), errors)
        if tx is not None:
            route = self._tx_route(tx)
            if not route.proven:
                return None
            reader, base, limit = SpanReader(route), 0, tx.data_size
        else:
            grand = self._first(lambda peer: peer.parent_of(parent), errors)
            located = self._locate(parent, grand, depth + 1) if grand else None
            if located is None:
                return None
            reader, pstart, pend = located
            head = reader.read(pstart, min(pend, pstart + HEADER_READ))
            header_size = ans104.header_size_of(head)
            if header_size is None:
                return None
            base, limit = pstart + header_size, pend
        entries = bundle.parse_bundle_index(lambda o, n: reader.read(base + o, base + o + n), limit - base)
        entry = next((e for e in entries if e.id == id), None)
        if entry is None:
            raise ProtocolError(f"bundle {parent} does not list item {id}")
        return reader, base + entry.offset, base + entry.offset + entry.size


class SpanReader:
    """Given a proven tx route, read small spans of its data (bundle indexes, item headers), every chunk proven."""

    def __init__(self, route: _TxRoute):
        self.route = route
        self._cache: dict[int, bytes] = {}

    def read(self, start: int, end: int) -> bytes:
        tx = self.route.tx
        end = min(end, tx.data_size)
        parts = []
        for unit in self.route.units:
            if unit.end <= start or unit.start >= end:
                continue
            data = self._unit(unit)
            parts.append(data[max(start - unit.start, 0) : end - unit.start])
        return b"".join(parts)

    def _unit(self, unit) -> bytes:
        if unit.index in self._cache:
            return self._cache[unit.index]
        tx, errors = self.route.tx, []
        for lane in self.route.lanes:
            try:
                data = _proven_unit(lane, tx, unit)
            except (StoreError, ProtocolError, OSError) as exc:
                errors.append(f"{lane.name}: {exc}")
                continue
            if len(self._cache) < 64:
                self._cache[unit.index] = data
            return data
        raise UpstreamError(f"chunk {unit.index} of {tx.id}: no peer gave a proven copy: " + "; ".join(errors))


def _proven_unit(lane, tx, unit) -> bytes:
    """Given a lane, a tx and one unit, fetch it from that peer and return it once proven."""
    if lane.mode == "chunk":
        chunk, path = lane.client.chunk(lane.weave_start + unit.end - 1)
        proofs.check_chunk(tx.data_root, tx.data_size, unit.start, unit.end, chunk, path)
        return chunk
    import time

    data = lane.client.read_range(tx.id, unit.start, unit.end, time.monotonic() + lane.client.limits.header_deadline_s)
    proofs.check_leaf(unit.leaf, data)
    return data


def held_units(units: list, spans: list[tuple[int, int]]) -> frozenset[int]:
    """Given a tx's units and the byte spans [start, end) a partial peer holds, return the units it holds whole."""
    held, at = set(), 0
    spans = sorted(spans)
    for unit in units:
        while at < len(spans) and spans[at][1] <= unit.start:
            at += 1
        if at < len(spans) and spans[at][0] <= unit.start and unit.end <= spans[at][1]:
            held.add(unit.index)
    return frozenset(held)


def _verified_only(tx, id: str):
    """Given a tx header a peer sent for id, return it once it verifies (not stored: a parent bundle)."""
    if tx is None:
        return None
    if tx.id != id:
        raise UpstreamError(f"answered /tx/{id} with tx {tx.id}")
    verify_tx(tx)
    return tx


def _own_header(header: bytes | None, id: str) -> bytes | None:
    """Given a binary item header a peer sent for id, return its header bytes when it names that ID."""
    if header is None:
        return None
    parsed = ans104.parse_header(header)
    if parsed.id != id:
        raise UpstreamError(f"answered item {id} with the header of {parsed.id}")
    return bytes(header[: parsed.header_size])
