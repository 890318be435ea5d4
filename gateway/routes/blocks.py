"""Block routes: `/block/height/{h}`, `/block/hash/{h}`, `/block/current`, `/tx_anchor`, arlocal's `/mine`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from gateway.access import require_dev_route
from gateway.errors import bad_request, not_found
from gateway.node import Node, node_of
from gateway.params import parse_uint
from gateway.routes.info import network_info
from permastore.protocol import b64url
from permastore.protocol.errors import MalformedData

router = APIRouter(tags=["blocks"])

BLOCK_HASH_SIZE = 48  # indep_hash: SHA-384, as on Arweave
MAX_MINE_AT_ONCE = 1000


def block_json(node: Node, block) -> dict:
    """Given a Block, return it in the Arweave node's `/block/...` JSON shape."""
    previous_weave_size = node.miner.weave_size_before(block.height)
    return {
        "indep_hash": block.indep_hash,
        "hash": block.indep_hash,
        "nonce": "",
        "previous_block": block.previous,
        "timestamp": block.timestamp,
        "last_retarget": block.timestamp,
        "diff": "0",
        "height": block.height,
        "txs": list(block.tx_ids),
        "tx_root": b64url.encode(node.miner.tx_root(block)),
        "wallet_list": "",
        "reward_addr": "unclaimed",
        "tags": [],
        "reward_pool": "0",
        "weave_size": block.weave_size,
        "block_size": block.weave_size - previous_weave_size,
        "cumulative_diff": "0",
        "hash_list_merkle": "",
    }


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


@router.get("/block/height/{height}", summary="The block at a height")
async def block_by_height(height: str, request: Request) -> JSONResponse:
    node = node_of(request)
    wanted = parse_uint(height, "height")
    return JSONResponse(await run_in_threadpool(lambda: _block_or_404(node, node.miner.block_at(wanted))))


@router.get("/block/hash/{indep_hash}", summary="The block with an indep_hash")
async def block_by_hash(indep_hash: str, request: Request) -> JSONResponse:
    node = node_of(request)
    wanted = _parse_block_hash(indep_hash)
    return JSONResponse(await run_in_threadpool(lambda: _block_or_404(node, node.miner.block_by_hash(wanted))))


@router.get("/block/current", summary="The newest block")
async def current_block(request: Request) -> JSONResponse:
    node = node_of(request)
    height, _ = node.miner.tip()
    return JSONResponse(await run_in_threadpool(lambda: _block_or_404(node, node.miner.block_at(height))))


@router.get("/tx_anchor", response_class=PlainTextResponse, summary="A recent block hash to use as last_tx")
async def tx_anchor(request: Request) -> PlainTextResponse:
    _, current = node_of(request).miner.tip()
    return PlainTextResponse(current)


@router.get("/mine", include_in_schema=False)
@router.post("/mine", summary="Development (arlocal): mine one block now; GET too")
async def mine(request: Request) -> JSONResponse:
    require_dev_route(request, "/mine")
    await node_of(request).miner.mine(1)
    return JSONResponse(network_info(request))


@router.get("/mine/{count}", include_in_schema=False)
@router.post("/mine/{count}", summary="Development (arlocal): mine several blocks now; GET too")
async def mine_many(count: str, request: Request) -> JSONResponse:
    require_dev_route(request, "/mine")
    blocks = parse_uint(count, "block count")
    if not 1 <= blocks <= MAX_MINE_AT_ONCE:
        raise bad_request(f"block count must be 1..{MAX_MINE_AT_ONCE}")
    await node_of(request).miner.mine(blocks)
    return JSONResponse(network_info(request))
