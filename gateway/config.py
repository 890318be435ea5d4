"""Settings of one gateway process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inference.settings import HerderSettings

from gateway.fastpath import DEFAULT_CACHE_BYTES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1984  # the Arweave node's and arlocal's port, so clients need only the host
# arlocal mines only on /mine; a real node every ~2 minutes. Ten seconds keeps getStatus
# loops in scripts short without making blocks so frequent that they mean nothing.
DEFAULT_MINE_INTERVAL = 10.0
DEFAULT_MAX_BODY = 12 * 1024 * 1024  # the Arweave node's limit for a tx with inline data
DEFAULT_MAX_ITEM_BODY = 2 * 1024 * 1024 * 1024  # a streamed ANS-104 item (POST /tx, octet-stream)
DEFAULT_MAX_CHUNK_BODY = 2 * 1024 * 1024  # one JSON chunk: 256 KiB b64url + proof, with headroom
DEFAULT_MAX_GRAPHQL_BODY = 256 * 1024
DEFAULT_MAX_DATA_SIZE = 64 * 1024**3  # the largest data_size a tx may claim (POST /tx, /chunk, fetches)


@dataclass
class GatewayConfig:
    """Given where the data lives and what limits apply, describe one gateway."""

    data_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    upstreams: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)  # fetched from like upstreams; see gateway.node.build_fetcher
    learn_peers: int = 0  # peers that may be learnt from the peers' /peers (0: none)
    max_rate: float | None = None  # bytes/s over every fetch from peers (None: no cap)
    max_fetches: int = 8  # objects fetched from peers at once
    mine_interval: float = DEFAULT_MINE_INTERVAL  # 0 or less: mine only on /mine
    max_tx_body: int = DEFAULT_MAX_BODY
    max_item_body: int = DEFAULT_MAX_ITEM_BODY
    max_chunk_body: int = DEFAULT_MAX_CHUNK_BODY
    max_graphql_body: int = DEFAULT_MAX_GRAPHQL_BODY
    max_data_size: int = DEFAULT_MAX_DATA_SIZE
    small_cache_bytes: int = DEFAULT_CACHE_BYTES  # verified bodies of small objects kept in memory
    enable_mint: bool = True  # arlocal's /mint: a development node hands out test tokens
    # The URL clients reach this node at (its AO Scheduler-Location); `serve` sets the listening URL.
    public_url: str | None = None
    # Inference herder settings as `serve` loaded them (file < env < flags); None: loaded at start.
    herder: HerderSettings | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
