"""Wallet routes: balances, last tx and arlocal's /mint."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from gateway.access import require_dev_route
from gateway.errors import ApiError
from gateway.node import node_of
from gateway.params import parse_address, parse_uint

router = APIRouter(tags=["wallet"])

MAX_MINT = 10**18  # winston per /mint call: a million AR, far above any test's needs
MAX_BALANCE = 10**24  # no minted balance grows past this (a thousand times all AR there is)


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
    require_dev_route(request, "/mint")
    if not node.config.enable_mint:
        raise ApiError(403, "minting is disabled on this node (serve --no-mint)")
    winston = parse_uint(amount, "amount", MAX_MINT)
    address = parse_address(address)
    if node.ledger.balance(address) + winston > MAX_BALANCE:
        raise ApiError(400, f"minting {winston} would take the balance past {MAX_BALANCE} winston")
    new_balance = node.ledger.mint(address, winston)
    # arlocal answers the new balance as a JSON number; digits, not a float, however large it gets.
    return Response(str(new_balance), media_type="application/json")
