"""Block routes: `/block/height/{h}`, `/block/hash/{h}`, `/block/current` (and `/current_block`), `/tx_anchor`,
arlocal's `/mine`."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from gateway.access import require_dev_route
from gateway.errors import bad_request, not_found
from gateway.node import Node, node_of
from gateway.openapi import BLOCK_HASH_PATTERN, DEVELOPMENT, ID_PATTERN, answers, json_body, text, uint_param
from gateway.params import parse_uint
from gateway.routes.info import NETWORK_INFO, network_info
from permastore.protocol import b64url
from permastore.protocol.errors import MalformedData
from permastore.protocol.wallet import address_of

router = APIRouter(tags=["blocks"])

BLOCK_HASH_SIZE = 48  # indep_hash: SHA-384, as on Arweave
MAX_MINE_AT_ONCE = 1000


# Fields ar.io's schema requires as 43- or 64-character base64url, which this node has no value
# for (no proof of work, no wallet list, no hash-list merkle): all-zero hashes of the right size.
NO_HASH_32 = b64url.encode(bytes(32))
NO_HASH_48 = b64url.encode(bytes(48))


def block_json(node: Node, block) -> dict:
    """Given a Block, return it in the Arweave node's `/block/...` JSON shape (ar.io's schema holds)."""
    previous_weave_size = node.miner.weave_size_before(block.height)
    tx_root = node.miner.tx_root(block)
    return {
        "indep_hash": block.indep_hash,
        "hash": block.indep_hash,
        "nonce": NO_HASH_32,
        "previous_block": block.previous or NO_HASH_48,  # genesis has none
        "timestamp": block.timestamp,
        "last_retarget": block.timestamp,
        "diff": "0",
        "height": block.height,
        "txs": list(block.tx_ids),
        "tx_root": b64url.encode(tx_root) if tx_root else NO_HASH_32,  # a block without data has no root
        "wallet_list": NO_HASH_48,
        "reward_addr": address_of(node.store.signer.owner),  # this node made the block
        "tags": [],
        "reward_pool": "0",
        "weave_size": block.weave_size,
        "block_size": block.weave_size - previous_weave_size,
        "cumulative_diff": "0",
        "hash_list_merkle": NO_HASH_48,
        "poa": {"option": "1"},
    }


BLOCK = {
    "type": "object",
    "required": ["indep_hash", "hash", "nonce", "previous_block", "timestamp", "last_retarget", "diff", "height", "txs",
                 "tx_root", "wallet_list", "reward_addr", "tags", "reward_pool", "weave_size", "block_size", "poa"],
    "properties": {
        "indep_hash": {"type": "string", "pattern": BLOCK_HASH_PATTERN},
        "hash": {"type": "string", "pattern": BLOCK_HASH_PATTERN},
        "nonce": {"type": "string", "pattern": "^[A-Za-z0-9_-]{43}$"},
        "previous_block": {"type": "string", "pattern": BLOCK_HASH_PATTERN},
        "timestamp": {"type": "integer"}, "last_retarget": {"type": "integer"}, "diff": {"type": "string"},
        "height": {"type": "integer", "minimum": 0},
        "txs": {"type": "array", "items": {"type": "string", "pattern": ID_PATTERN}},
        "tx_root": {"type": "string", "pattern": ID_PATTERN},
        "wallet_list": {"type": "string", "pattern": BLOCK_HASH_PATTERN},
        "reward_addr": {"type": "string", "pattern": ID_PATTERN},
        "tags": {"type": "array"}, "reward_pool": {"type": "string"},
        "weave_size": {"type": "integer"}, "block_size": {"type": "integer"}, "cumulative_diff": {"type": "string"},
        "hash_list_merkle": {"type": "string", "pattern": BLOCK_HASH_PATTERN},
        "poa": {"type": "object"},
    },
}
BLOCK_ANSWERS = answers(400, 404, s200=json_body(BLOCK))
MINED = answers(400, 403, s200=json_body(NETWORK_INFO))


def _parse_block_hash(text: str) -> str:
    try:
        raw = b64url.decode(text)
    except MalformedData:
        raw = b""
    if len(raw) != BLOCK_HASH_SIZE:
        raise bad_request("invalid block hash: expected 64 base64url characters (48 bytes)")
    return text


def _block_or_404(node: Node, block) -> dict:
    if block is None:
        raise not_found()
    return block_json(node, block)


@router.get("/block/height/{height}", summary="The block at a height", responses=BLOCK_ANSWERS)
async def block_by_height(request: Request, height: str = uint_param("block height")) -> JSONResponse:
    node = node_of(request)
    wanted = parse_uint(height, "height")
    return JSONResponse(await run_in_threadpool(lambda: _block_or_404(node, node.miner.block_at(wanted))))


@router.get("/block/hash/{indep_hash}", summary="The block with an indep_hash", responses=BLOCK_ANSWERS)
async def block_by_hash(request: Request, indep_hash: str = Path(pattern=BLOCK_HASH_PATTERN)) -> JSONResponse:
    node = node_of(request)
    wanted = _parse_block_hash(indep_hash)
    return JSONResponse(await run_in_threadpool(lambda: _block_or_404(node, node.miner.block_by_hash(wanted))))


async def _current(request: Request) -> JSONResponse:
    node = node_of(request)
    height, _ = node.miner.tip()
    return JSONResponse(await run_in_threadpool(lambda: _block_or_404(node, node.miner.block_at(height))))


@router.get("/block/current", summary="The newest block", responses=answers(s200=json_body(BLOCK)))
async def current_block(request: Request) -> JSONResponse:
    return await _current(request)


@router.get("/current_block", summary="The newest block (the Arweave node's older name)",
              responses=answers(s200=json_body(BLOCK)))
async def current_block_old_name(request: Request) -> JSONResponse:
    return await _current(request)


@router.get("/tx_anchor", response_class=PlainTextResponse, summary="A recent block hash to use as last_tx",
              responses=answers(s200=text({"type": "string", "pattern": BLOCK_HASH_PATTERN})))
async def tx_anchor(request: Request) -> PlainTextResponse:
    _, current = node_of(request).miner.tip()
    return PlainTextResponse(current)


@router.get("/mine", summary="Development (arlocal; loopback clients): mine one block now", responses=MINED,
            openapi_extra=DEVELOPMENT)
@router.post("/mine", summary="Development (arlocal; loopback clients): mine one block now", responses=MINED)
async def mine(request: Request) -> JSONResponse:
    require_dev_route(request, "/mine")
    await node_of(request).miner.mine(1)
    return JSONResponse(network_info(request))


@router.get("/mine/{count}", summary="Development (arlocal; loopback clients): mine several blocks now", responses=MINED,
            openapi_extra=DEVELOPMENT)
@router.post("/mine/{count}", summary="Development (arlocal; loopback clients): mine several blocks now", responses=MINED)
async def mine_many(request: Request, count: int = Path(ge=1, le=MAX_MINE_AT_ONCE, description="blocks to mine")) -> JSONResponse:
    require_dev_route(request, "/mine")
    await node_of(request).miner.mine(count)
    return JSONResponse(network_info(request))
