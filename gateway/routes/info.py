"""Node-level routes: /info, /healthcheck, /peers, /price."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from gateway.node import node_of
from gateway.params import parse_address, parse_uint
from permastore.protocol.merkle import MAX_CHUNK_SIZE as CHUNK_SIZE

router = APIRouter(tags=["node"])

NETWORK_NAME = "permastore.localnet"
PROTOCOL_VERSION = 5  # what the Arweave node reports as "version"
RELEASE = 1

WINSTON_PER_BYTE = 1000  # a development price: storage is charged per started 256 KiB chunk


def price_of(size: int) -> int:
    """Given a data size in bytes, return the upload price in winston (at least one chunk)."""
    chunks = max(1, -(-size // CHUNK_SIZE))
    return chunks * CHUNK_SIZE * WINSTON_PER_BYTE


def network_info(request: Request) -> dict:
    """Given a request, return the Arweave node's /info document for this node."""
    node = node_of(request)
    height, current = node.miner.tip()
    return {
        "network": NETWORK_NAME,
        "version": PROTOCOL_VERSION,
        "release": RELEASE,
        "height": height,
        "current": current,
        "blocks": height + 1,
        "peers": len(node.config.upstreams),
        "queue_length": node.miner.pending_count(),
        "node_state_latency": 0,
    }


@router.get("/info", summary="Network and chain tip, as the Arweave node reports them")
@router.get("/", include_in_schema=False)
async def info(request: Request) -> JSONResponse:
    return JSONResponse(network_info(request))


@router.get("/healthcheck", summary="Liveness: 200 while the node can answer")
async def healthcheck(request: Request) -> JSONResponse:
    height, _ = node_of(request).miner.tip()
    return JSONResponse({"status": "ok", "height": height})


@router.get("/peers", summary="The peers this node fetches from (--upstream, --peer, learnt), host:port")
async def peers(request: Request) -> JSONResponse:
    hosts = []
    for url in node_of(request).peer_urls():
        parts = urlsplit(url)
        hosts.append(parts.netloc or url)
    return JSONResponse(hosts)


@router.get("/price/{size}", response_class=PlainTextResponse, summary="Upload price in winston")
async def price(size: str) -> PlainTextResponse:
    return PlainTextResponse(str(price_of(parse_uint(size, "byte count"))))


@router.get("/price/{size}/{target}", response_class=PlainTextResponse, summary="Upload price with a transfer")
async def price_with_target(size: str, target: str) -> PlainTextResponse:
    parse_address(target)
    return PlainTextResponse(str(price_of(parse_uint(size, "byte count"))))
