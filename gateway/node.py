"""One running node: the store, the ledger, the data sources and the miner, shared by routes."""

from __future__ import annotations

import logging
import threading

from fastapi import Request

from permastore.store import NotFound, Store

from gateway.config import GatewayConfig
from gateway.chain_status import Confirmation, UpstreamStatus
from gateway.errors import ApiError
from gateway.ledger import Ledger

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
        self.ledger = Ledger(config.data_dir)
        self.accept_lock = threading.Lock()
        self.small_cache = None  # a SmallObjectCache, set by the app
        self.upstream = build_upstream(self.store, config.upstreams, config.max_data_size)
        self.read_through_slots = threading.BoundedSemaphore(MAX_READ_THROUGH_WAITERS)
        self.upstream_status = UpstreamStatus(self.ledger, config.upstreams) if config.upstreams else None
        from gateway.miner import Miner  # the miner needs the store opened above

        self.miner = Miner(self.store, config.mine_interval)

    def fetch_through(self, object_id: str, want_data: bool = True):
        """Given an ID missing locally, fetch it through the upstreams (verified, then stored); return its info.

        Without want_data only an L1 tx's signed header is needed: it is kept even when its
        data cannot be had. None when no upstream has it; 502 when upstreams failed or sent
        what does not verify (and, for want_data=False, not even a header was kept).
        """
        from permastore.sources import UpstreamError

        # Security: a bounded number of requests wait on upstreams; the next ones are told to retry.
        if not self.read_through_slots.acquire(blocking=False):
            raise ApiError(503, "too many reads through upstreams in progress; retry later", {"Retry-After": "5"})
        try:
            if want_data:
                self.upstream.fetch(object_id)  # fetches, verifies and stores the whole object
            else:
                self.upstream.fetch_header(object_id)
        except NotFound:
            return self._read_through_info(object_id)
        except UpstreamError as exc:
            info = self._read_through_info(object_id)
            if want_data or info is None:
                raise ApiError(502, f"upstream could not give verified data, nothing served: {exc}") from None
            return info
        except Exception as exc:  # an upstream answer of a shape nobody expected is its fault, not ours
            log.warning("read-through of %s failed on an upstream answer: %r", object_id, exc)
            raise ApiError(502, f"upstream answer unusable: {type(exc).__name__}") from None
        finally:
            self.read_through_slots.release()
        return self._read_through_info(object_id)

    def _read_through_info(self, object_id: str):
        """The info of what a read-through kept (None if nothing); an L1 tx's status is the upstream chain's."""
        info = self.store.info(object_id)
        if info is not None and info.kind == "tx":
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
        if self.upstream_status is not None:
            self.upstream_status.close()
        self.ledger.close()
        self.store.close()


def build_upstream(store: Store, upstreams: list[str], max_data_size: int):
    """Given the store and upstream URLs, return the read-through source, or None without any.

    Upstreams are tried in order; whatever one returns is verified and stored by
    ReadThroughSource before a byte of it is served.
    """
    if not upstreams:
        return None
    from permastore.sources import FallbackSource, ReadThroughSource, UpstreamSource
    from permastore.sources.limits import FetchLimits

    limits = FetchLimits(max_data_size=max_data_size)
    return ReadThroughSource(FallbackSource([UpstreamSource(url, limits=limits) for url in upstreams]), store)


def node_of(request: Request) -> Node:
    """Given a request, return the node its app serves."""
    return request.app.state.node
