"""One running node: the store, the ledger, the data sources and the miner, shared by routes."""

from __future__ import annotations

import threading

from fastapi import Request

from permastore.store import Store

from gateway.config import GatewayConfig
from gateway.errors import ApiError
from gateway.ledger import Ledger


class Node:
    """Given a config, open everything a gateway serves from."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(config.data_dir)
        self.ledger = Ledger(config.data_dir)
        self.accept_lock = threading.Lock()
        self.small_cache = None  # a SmallObjectCache, set by the app
        self.upstream = build_upstream(self.store, config.upstreams)
        from gateway.miner import Miner  # the miner needs the store opened above

        self.miner = Miner(self.store, config.mine_interval)

    def fetch_through(self, object_id: str):
        """Given an ID missing locally, fetch it through the upstreams (verified, then stored); return its info."""
        from gateway.upstream import UpstreamRefused

        try:
            return self.upstream.fetch(object_id)
        except UpstreamRefused as exc:
            raise ApiError(502, f"upstream data failed verification, not served: {exc}") from None

    def close(self) -> None:
        if self.upstream is not None:
            self.upstream.close()
        self.ledger.close()
        self.store.close()


def build_upstream(store: Store, upstreams: list[str]):
    """Given the store and upstream URLs, return the read-through Upstream, or None without any.

    Upstreams are tried in order; whatever one returns is verified and stored
    before a byte of it is served.
    """
    if not upstreams:
        return None
    from gateway.upstream import Upstream

    return Upstream(store, upstreams)


def node_of(request: Request) -> Node:
    """Given a request, return the node its app serves."""
    return request.app.state.node
