"""`permastore serve`: the gateway's command, added to the core CLI as a plugin."""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from gateway.config import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_HOST,
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CHUNK_BODY,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_DATA_SIZE,
    DEFAULT_MAX_ITEM_BODY,
    DEFAULT_MAX_SPOOL_BYTES,
    DEFAULT_MAX_UPLOADS,
    DEFAULT_MINE_INTERVAL,
    DEFAULT_PORT,
    ConnectionLimits,
    GatewayConfig,
)
from gateway.fastpath import DEFAULT_CACHE_BYTES, DEFAULT_MAX_AGE_S
from inference.settings import HerderSettings, SettingsError
from permastore.cli.errors import CliError
from permastore.sources.rate_limit import parse_rate


def register(subparsers) -> None:
    """Given the CLI's subparsers, add `serve`."""
    parser = subparsers.add_parser(
        "serve",
        help="run the HTTP gateway (Arweave / ar.io API)",
        description="Serve the data folder over the Arweave / ar.io HTTP API.",
    )
    # SUPPRESS: `permastore --data X serve` and `permastore serve --data X` both work.
    parser.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR", help="data folder")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument("--quiet", action="store_true", help="no access log (by default one line per request on stderr)")
    parser.add_argument(
        "--upstream", action="append", default=[], metavar="URL",
        help="gateway or node to read missing IDs through (repeatable; tried in order)",
    )
    peers = parser.add_argument_group("fetching from peers (Arweave nodes, ar.io gateways, permastore nodes)")
    peers.add_argument(
        "--peer", action="append", default=[], metavar="URL",
        help="node to fetch missing IDs from, many at once, every chunk proven (repeatable)",
    )
    peers.add_argument("--learn-peers", type=int, default=0, metavar="N",
                       help="also fetch from up to N peers listed on the peers' GET /peers (default 0: off)")
    peers.add_argument("--max-rate", type=parse_rate, default=None, metavar="RATE",
                       help="cap on fetching from peers, bytes/s (K, M, G suffixes: 50M); default none")
    parser.add_argument(
        "--mine-interval", type=float, default=DEFAULT_MINE_INTERVAL, metavar="S",
        help=f"seconds between blocks (default {DEFAULT_MINE_INTERVAL:g}; 0 = only on /mine)",
    )
    parser.add_argument("--no-mint", action="store_true", help="refuse arlocal's /mint route")
    parser.add_argument("--cache-bytes", type=int, default=DEFAULT_CACHE_BYTES, metavar="N",
                        help=f"memory for verified small objects answered without a disk read, headers and bookkeeping "
                             f"counted (default {DEFAULT_CACHE_BYTES}; 0 = no cache)")
    parser.add_argument("--cache-reverify", type=float, default=DEFAULT_MAX_AGE_S, metavar="S",
                        help="seconds a small object is answered from memory before its stored copy is verified "
                             f"again (default {DEFAULT_MAX_AGE_S:g})")
    parser.add_argument("--no-dev-routes", action="store_true",
                        help="refuse arlocal's /mint and /mine to everyone (by default they answer 127.0.0.1 / ::1 only)")
    parser.add_argument("--public-url", metavar="URL",
                        help="URL clients reach this node at, published as its AO Scheduler-Location "
                             "(default: the listening URL)")
    limits = parser.add_argument_group("request body limits (bytes; larger bodies get 413)")
    limits.add_argument("--max-tx-body", type=int, default=DEFAULT_MAX_BODY, metavar="N",
                        help=f"POST /tx JSON, inline data included (default {DEFAULT_MAX_BODY})")
    limits.add_argument("--max-item-body", type=int, default=DEFAULT_MAX_ITEM_BODY, metavar="N",
                        help=f"POST /tx ANS-104 item (default {DEFAULT_MAX_ITEM_BODY})")
    limits.add_argument("--max-chunk-body", type=int, default=DEFAULT_MAX_CHUNK_BODY, metavar="N",
                        help=f"POST /chunk JSON (default {DEFAULT_MAX_CHUNK_BODY})")
    limits.add_argument("--max-data-size", type=int, default=DEFAULT_MAX_DATA_SIZE, metavar="N",
                        help=f"largest data_size a tx may claim, posted or fetched (default {DEFAULT_MAX_DATA_SIZE})")
    limits.add_argument("--max-uploads", type=int, default=DEFAULT_MAX_UPLOADS, metavar="N",
                        help=f"streamed item uploads at once; more get 503 (default {DEFAULT_MAX_UPLOADS})")
    limits.add_argument("--max-spool-bytes", type=int, default=DEFAULT_MAX_SPOOL_BYTES, metavar="N",
                        help=f"bytes of streamed uploads spooled at once; past it 503 (default {DEFAULT_MAX_SPOOL_BYTES})")
    _connection_arguments(parser)
    _herder_arguments(parser)
    parser.set_defaults(handler=run_serve)
    from inference.herder import remote_cli

    remote_cli.register(subparsers)  # `permastore worker`: a node's other role in a herd


def _connection_arguments(parser) -> None:
    """Connection limits: what a client may hold open and how slowly it may send."""
    group = parser.add_argument_group("connections (a client past these is answered 4xx/503 and disconnected)")
    group.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                       help=f"open connections at once (default {DEFAULT_MAX_CONNECTIONS})")
    group.add_argument("--header-timeout", type=float, default=DEFAULT_HEADER_TIMEOUT_S, metavar="S",
                       help="seconds to send a request's headers, from its first byte or from connecting "
                            f"(default {DEFAULT_HEADER_TIMEOUT_S:g})")
    group.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S, metavar="S",
                       help=f"seconds a request body may pause between bytes (default {DEFAULT_BODY_TIMEOUT_S:g})")
    group.add_argument("--keep-alive-timeout", type=float, default=DEFAULT_KEEP_ALIVE_S, metavar="S",
                       help=f"seconds an idle keep-alive connection stays open (default {DEFAULT_KEEP_ALIVE_S:g})")


def _herder_arguments(parser) -> None:
    """Inference herder flags; unset ones fall back to data/herder.json, PERMASTORE_* env, defaults."""
    group = parser.add_argument_group("inference herder (default: fees off, no key needed from 127.0.0.1)")
    group.add_argument("--workers", type=int, metavar="N", help="llama.cpp worker processes (default 1; 0: remote workers run every call)")
    group.add_argument("--fee-base", type=int, metavar="N", help="fee per call, in credits (default 0)")
    group.add_argument("--fee-token", type=int, metavar="N", help="fee per prompt + max token (default 0)")
    group.add_argument("--require-keys", action="store_true", default=None,
                       help="every caller needs an API key or a signed request, local ones too")
    group.add_argument("--call-timeout", type=float, metavar="S", help="seconds per call attempt (default 300)")
    group.add_argument("--trust-model-owner", action="append", default=None, metavar="ADDRESS",
                       help="list and load models this wallet uploaded (repeatable; this node's own always are)")
    group.add_argument("--allow-worker", action="append", default=None, metavar="ADDRESS",
                       help="a worker node's wallet that may lease calls (`permastore worker --head`; repeatable)")
    group.add_argument("--lease-ttl", type=float, metavar="S",
                       help="seconds a remote worker's lease lasts unless renewed by its heartbeats (default 10)")
    group.add_argument("--verify-fraction", type=float, metavar="F",
                       help="share of remote workers' calls run again elsewhere and compared (default 0.05)")


def _herder_settings(args: argparse.Namespace) -> HerderSettings:
    """Given parsed serve flags, return the herder settings (file < env < flags), loaded once."""
    flags = {
        "workers": args.workers, "fee_base": args.fee_base, "fee_token": args.fee_token,
        "require_keys": args.require_keys, "call_timeout_s": args.call_timeout,
        "trust_model_owners": tuple(args.trust_model_owner) if args.trust_model_owner else None,
        "allow_workers": tuple(args.allow_worker) if args.allow_worker else None,
        "lease_ttl_s": args.lease_ttl, "verify_fraction": args.verify_fraction,
    }
    try:
        return HerderSettings.load(args.data, **flags)
    except SettingsError as exc:
        raise CliError(f"invalid herder settings: {exc}") from None


def _check_public_url(url: str) -> None:
    """Given --public-url, return if clients can be sent to it (the node signs it as its Scheduler-Location)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or any(c.isspace() for c in url):
        raise CliError(f"invalid --public-url {url!r}: expected an http:// or https:// URL with a host "
                       "(a path is allowed, a query or fragment is not)")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in 0-65535
    except ValueError:
        raise CliError(f"invalid --public-url {url!r}: its port is not a number in 0-65535") from None


def run_serve(args: argparse.Namespace) -> int:
    """Given parsed arguments, run the gateway until stopped; return the exit status."""
    if not 0 <= args.port <= 65535:
        raise CliError(f"invalid port {args.port}")
    for url in args.upstream + args.peer:
        if not url.startswith(("http://", "https://")):
            raise CliError(f"invalid upstream or peer {url!r}: expected an http:// or https:// URL")
    if not 0 <= args.learn_peers <= 1000:
        raise CliError("--learn-peers must be between 0 and 1000")
    if args.public_url is not None:
        _check_public_url(args.public_url)
    if args.cache_bytes < 0:
        raise CliError("--cache-bytes must be 0 or more")
    if args.mine_interval < 0:
        raise CliError("--mine-interval must be 0 or more")
    for flag in ("cache_reverify", "max_tx_body", "max_item_body", "max_chunk_body", "max_data_size", "max_uploads",
                 "max_spool_bytes", "max_connections", "header_timeout", "body_timeout", "keep_alive_timeout"):
        if getattr(args, flag) <= 0:
            raise CliError(f"--{flag.replace('_', '-')} must be positive")
    config = GatewayConfig(
        data_dir=args.data,
        host=args.host,
        port=args.port,
        upstreams=[url.rstrip("/") for url in args.upstream],
        peers=[url.rstrip("/") for url in args.peer],
        learn_peers=args.learn_peers,
        max_rate=args.max_rate,
        mine_interval=args.mine_interval,
        enable_mint=not args.no_mint,
        dev_routes=not args.no_dev_routes,
        small_cache_bytes=args.cache_bytes,
        small_cache_max_age_s=args.cache_reverify,
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        max_tx_body=args.max_tx_body,
        max_item_body=args.max_item_body,
        max_chunk_body=args.max_chunk_body,
        max_data_size=args.max_data_size,
        max_uploads=args.max_uploads,
        max_spool_bytes=args.max_spool_bytes,
        connections=ConnectionLimits(
            max_connections=args.max_connections,
            header_timeout_s=args.header_timeout,
            body_timeout_s=args.body_timeout,
            keep_alive_s=args.keep_alive_timeout,
        ),
        herder=_herder_settings(args),
    )
    from gateway.serve_lock import holding_serve_lock
    from gateway.server import serve

    with holding_serve_lock(args.data) as lock:  # one server per data folder; CLI commands need no lock
        try:
            serve(config, quiet=args.quiet, lock=lock)
        except OSError as exc:  # e.g. the port is taken
            raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    return 0
