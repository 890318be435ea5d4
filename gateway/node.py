"""One running node: the store, the ledger, the data sources and the miner, shared by routes."""

from __future__ import annotations

import logging
import threading

from fastapi import Request

from gateway.chain_status import Confirmation, UpstreamStatus
from gateway.config import GatewayConfig
from gateway.errors import ApiError
from gateway.fastpath import SmallObjectCache
from gateway.ledger import Ledger
from permastore.store import NotFound, Store

log = logging.getLogger("gateway")

# Requests that may wait on a read-through at once. Each holds one of the server's worker
# threads (40): the rest stay free for local reads however slow the upstreams are.
MAX_READ_THROUGH_WAITERS = 16


class Node:
    """Given a config, open everything a gateway serves from."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(config.data_dir)
        self.store.max_data_size = config.max_data_size
        self.store.follow_bucket()  # with a bucket: learn other nodes' headers every 2 s (no-op without)
        self.ledger = Ledger(config.data_dir)
        self.accept_lock = threading.Lock()
        self.small_cache: SmallObjectCache | None = None  # set by the app
        self.fetcher = build_fetcher(self.store, config)
        if self.store.bucket is not None and self.fetcher is not None:
            self.store.bucket.repair_from(self.fetcher.peers.clients)  # bad bucket chunks: proven from peers, rewritten
        self.upstream = build_upstream(self.store, config, self.fetcher)
        self.read_through_slots = threading.BoundedSemaphore(MAX_READ_THROUGH_WAITERS)
        network = config.upstreams + [url for url in config.peers if url not in config.upstreams]
        self.upstream_status = UpstreamStatus(self.ledger, network) if network else None
        from gateway.miner import Miner  # the miner needs the store opened above

        self.miner = Miner(self.store, config.mine_interval)

    def fetch_through(self, object_id: str, want_data: bool = True):
        """Given an ID missing locally, fetch it from the peers (verified, then stored); return its info.

        With want_data, a tx proven chunk by chunk is returned as soon as its header is in and
        its fetch has begun (the data route streams it while it arrives); anything else once it
        is complete. Without want_data only an L1 tx's signed header is needed: it is kept even
        when its data cannot be had. None when no peer has it; 502 when peers failed or sent
        what does not verify; 503 when too many fetches are waited on.
        """
        from permastore.sources import UpstreamError

        # Security: a bounded number of requests wait on peers; the next ones are told to retry.
        if not self.read_through_slots.acquire(blocking=False):
            raise ApiError(503, "too many reads through peers in progress; retry later", {"Retry-After": "5"})
        try:
            if want_data:
                self._fetch_data(object_id)
            else:
                self.upstream.fetch_header(object_id)
        except NotFound:
            return self._read_through_info(object_id)
        except UpstreamError as exc:
            if getattr(exc, "busy", False):
                raise ApiError(503, str(exc), {"Retry-After": "5"}) from None
            info = self._read_through_info(object_id)
            if want_data or info is None:
                raise ApiError(502, f"peers could not give verified data, nothing served: {exc}") from None
            return info
        except Exception as exc:  # a peer's answer of a shape nobody expected is its fault, not ours
            log.warning("read-through of %s failed on a peer's answer: %r", object_id, exc)
            raise ApiError(502, f"peer answer unusable: {type(exc).__name__}") from None
        finally:
            self.read_through_slots.release()
        return self._read_through_info(object_id)

    def _fetch_data(self, object_id: str) -> None:
        session = self.fetcher.session(object_id)
        session.planned.wait(self.fetcher.limits.deadline_s)
        if session.servable and not session.done.is_set():
            return  # streamed while it arrives
        session.wait(self.fetcher.limits.deadline_s)

    def peer_urls(self) -> list[str]:
        """Return the base URLs of the peers this node fetches from (upstreams first)."""
        return self.fetcher.peers.urls() if self.fetcher is not None else []

    def streaming(self, info):
        """Given an object's info, return (its info now, the fetch streaming it or None).

        A fetch that ended since ``info`` was read left the object complete: its new info says so.
        """
        if info.data_complete:
            return info, None
        session = self.streaming_session(info.id)
        if session is None:
            info = self.store.info(info.id) or info
        return info, session

    def streaming_session(self, object_id: str):
        """Given an ID, return the running fetch whose held bytes may be served now, or None."""
        session = self.fetcher.active(object_id) if self.fetcher is not None else None
        return session if session is not None and session.servable else None

    def _read_through_info(self, object_id: str):
        """The info of what a read-through kept (None if nothing); an L1 tx's status is the upstream chain's."""
        info = self.store.info(object_id)
        if info is not None and info.kind == "tx" and self.upstream_status is not None:
            self.upstream_status.remember(object_id)  # its status is the upstream chain's, not this node's
        return info

    def confirmation(self, info) -> Confirmation | None:
        """Given an L1 tx's info, return (block_height, indep_hash, confirmations), or None while pending.

        A tx read through an upstream that confirmed it reports the upstream's block;
        otherwise this node's own block, once mined.
        """
        if self.upstream_status is not None:
            confirmed = self.upstream_status.confirmation(info.id)
            if confirmed is not None:
                return confirmed
        if info.height is None:
            return None
        tip_height, _ = self.miner.tip()
        return info.height, info.block_hash, max(1, tip_height - info.height + 1)

    def close(self) -> None:
        if self.fetcher is not None:
            self.fetcher.close()
        if self.upstream_status is not None:
            self.upstream_status.close()
        self.ledger.close()
        self.store.close()


def build_fetcher(store: Store, config: GatewayConfig):
    """Given the store and the config, return the node's fetch engine over its peers, or None without any.

    `--upstream` and `--peer` are one mechanism: every URL is a peer of one Fetcher (upstreams
    first); upstreams are also the chain whose confirmations this node reports.
    """
    urls = config.upstreams + [url for url in config.peers if url not in config.upstreams]
    if not urls:
        return None
    from permastore.sources.engine import Fetcher
    from permastore.sources.limits import FetchLimits
    from permastore.sources.peer_set import PeerSet
    from permastore.sources.scheduler import FetchSettings

    limits = FetchLimits(max_data_size=config.max_data_size)
    peers = PeerSet(urls, limits, learn=config.learn_peers)
    settings = FetchSettings(max_rate=config.max_rate)
    return Fetcher(store, peers, settings, limits, max_sessions=config.max_fetches)


def build_upstream(store: Store, config: GatewayConfig, fetcher):
    """Given the store, the config and the fetcher, return the read-through source (None without peers).

    Inference resolves models and records through it; whatever it returns was verified and
    stored before a byte of it is served.
    """
    if fetcher is None:
        return None
    from permastore.sources import FallbackSource, ReadThroughSource, UpstreamSource

    urls = fetcher.peers.urls()
    return ReadThroughSource(FallbackSource([UpstreamSource(url) for url in urls]), store, fetcher=fetcher)


def node_of(request: Request) -> Node:
    """Given a request, return the node its app serves."""
    return request.app.state.node
