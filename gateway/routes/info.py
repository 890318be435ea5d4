"""Node-level routes: /info (and /), /height, /healthcheck, /peers, /price."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gateway.node import node_of
from gateway.openapi import BLOCK_HASH_PATTERN, RouteDocs, answers, id_param, json_body, text, uint_param
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


NETWORK_INFO = {
    "type": "object",
    "required": ["network", "version", "release", "height", "current", "blocks", "peers", "queue_length", "node_state_latency"],
    "properties": {
        "network": {"type": "string"}, "version": {"type": "integer"}, "release": {"type": "integer"},
        "height": {"type": "integer", "minimum": 0}, "current": {"type": "string", "pattern": BLOCK_HASH_PATTERN},
        "blocks": {"type": "integer"}, "peers": {"type": "integer"}, "queue_length": {"type": "integer"},
        "node_state_latency": {"type": "integer"},
    },
}
INFO: RouteDocs = {"summary": "Network and chain tip, as the Arweave node reports them",
        "responses": answers(s200=json_body(NETWORK_INFO))}
PRICE = answers(400, s200=text({"type": "string", "pattern": "^[0-9]+$"}))


@router.get("/info", **INFO)
async def info(request: Request) -> JSONResponse:
    return JSONResponse(network_info(request))


@router.get("/", **INFO)
async def root_info(request: Request) -> JSONResponse:
    return JSONResponse(network_info(request))


@router.get("/height", summary="The height of the newest block (a JSON number, as ar.io answers)",
              responses=answers(s200=json_body({"type": "integer", "minimum": 0})))
async def height(request: Request) -> Response:
    tip_height, _ = node_of(request).miner.tip()
    return Response(str(tip_height), media_type="application/json")


@router.get("/healthcheck", summary="Liveness: 200 while the node can answer",
              responses=answers(s200=json_body({"type": "object", "required": ["status", "height"], "properties": {
                  "status": {"type": "string", "enum": ["ok"]}, "height": {"type": "integer"}}})))
async def healthcheck(request: Request) -> JSONResponse:
    height, _ = node_of(request).miner.tip()
    return JSONResponse({"status": "ok", "height": height})


@router.get("/peers", summary="The peers this node fetches from (--upstream, --peer, learnt), host:port",
            responses=answers(s200=json_body({"type": "array", "items": {"type": "string"}})))
async def peers(request: Request) -> JSONResponse:
    hosts = []
    for url in node_of(request).peer_urls():
        parts = urlsplit(url)
        hosts.append(parts.netloc or url)
    return JSONResponse(hosts)


@router.get("/price/{size}", response_class=PlainTextResponse, summary="Upload price in winston",
              responses=PRICE)
async def price(size: str = uint_param("data size in bytes")) -> PlainTextResponse:
    return PlainTextResponse(str(price_of(parse_uint(size, "byte count"))))


@router.get("/price/{size}/{target}", response_class=PlainTextResponse, summary="Upload price with a transfer",
              responses=PRICE)
async def price_with_target(
    size: str = uint_param("data size in bytes"), target: str = id_param("wallet address")
) -> PlainTextResponse:
    parse_address(target)
    return PlainTextResponse(str(price_of(parse_uint(size, "byte count"))))
