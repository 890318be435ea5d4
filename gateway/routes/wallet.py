"""Wallet routes: balances, last tx and arlocal's /mint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from gateway.errors import ApiError
from gateway.node import node_of
from gateway.params import parse_address, parse_uint

router = APIRouter(tags=["wallet"])

MAX_MINT = 10**30  # far above any test's needs; keeps balances bounded


@router.get("/wallet/{address}/balance", response_class=PlainTextResponse, summary="Balance in winston")
async def balance(address: str, request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(node_of(request).ledger.balance(parse_address(address))))


@router.get("/wallet/{address}/last_tx", response_class=PlainTextResponse, summary="ID of the last accepted tx")
async def last_tx(address: str, request: Request) -> PlainTextResponse:
    return PlainTextResponse(node_of(request).ledger.last_tx(parse_address(address)))


@router.post("/mint/{address}/{amount}", include_in_schema=False)
@router.get(
    "/mint/{address}/{amount}",
    summary="Development only (arlocal): credit test winston to a wallet; returns the new balance (a JSON number)",
)
async def mint(address: str, amount: str, request: Request) -> Response:
    node = node_of(request)
    if not node.config.enable_mint:
        raise ApiError(403, "minting is disabled on this node")
    winston = parse_uint(amount, "amount")
    if winston > MAX_MINT:
        raise ApiError(400, f"amount above {MAX_MINT}")
    new_balance = node.ledger.mint(parse_address(address), winston)
    # arlocal answers the new balance as a JSON number; digits, not a float, however large it gets.
    return Response(str(new_balance), media_type="application/json")
