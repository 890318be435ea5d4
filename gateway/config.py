"""Settings of one gateway process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.fastpath import DEFAULT_CACHE_BYTES, DEFAULT_MAX_AGE_S
from inference.settings import HerderSettings

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
DEFAULT_MAX_UPLOADS = 16  # streamed item uploads spooling at once
DEFAULT_MAX_SPOOL_BYTES = 8 * 1024 * 1024 * 1024  # their bytes together (memory, then data/tmp)


DEFAULT_MAX_CONNECTIONS = 2048
DEFAULT_HEADER_TIMEOUT_S = 15.0  # nginx allows 60; slowloris clients hold a connection no longer than this
DEFAULT_BODY_TIMEOUT_S = 60.0  # as nginx's client_body_timeout: between two reads, not for the whole body
DEFAULT_KEEP_ALIVE_S = 30.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024  # request line and headers together (nginx: 4 x 8 KiB lines by default)
DEFAULT_MAX_HEADERS = 128
DEFAULT_MAX_URL_BYTES = 16 * 1024


@dataclass
class ConnectionLimits:
    """What one client connection may take: headers, time, and how many connections there may be."""

    max_connections: int = DEFAULT_MAX_CONNECTIONS
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_headers: int = DEFAULT_MAX_HEADERS
    max_url_bytes: int = DEFAULT_MAX_URL_BYTES


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
    max_uploads: int = DEFAULT_MAX_UPLOADS
    max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES
    small_cache_bytes: int = DEFAULT_CACHE_BYTES  # verified bodies of small objects kept in memory
    small_cache_max_age_s: float = DEFAULT_MAX_AGE_S  # then the store copy is verified again before more hits
    enable_mint: bool = True  # arlocal's /mint: a development node hands out test tokens
    dev_routes: bool = True  # /mint and /mine, to loopback clients only; False: to nobody
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    # The URL clients reach this node at (its AO Scheduler-Location); `serve` sets the listening URL.
    public_url: str | None = None
    # Inference herder settings as `serve` loaded them (file < env < flags); None: loaded at start.
    herder: HerderSettings | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
