"""Wallet routes: balances, last tx and arlocal's /mint."""

from __future__ import annotations

from fastapi import APIRouter, Path, Request
from fastapi.responses import PlainTextResponse, Response

from gateway.access import require_dev_route
from gateway.errors import ApiError
from gateway.node import node_of
from gateway.openapi import DEVELOPMENT, RouteDocs, answers, id_param, json_body, text
from gateway.params import parse_address

router = APIRouter(tags=["wallet"])

MAX_MINT = 10**18  # winston per /mint call: a million AR, far above any test's needs
MAX_BALANCE = 10**24  # no minted balance grows past this (a thousand times all AR there is)


WINSTON = text({"type": "string", "pattern": "^[0-9]+$"})
MINT: RouteDocs = {
    "summary": "Development only (arlocal; loopback clients): credit test winston, answer the new balance (a JSON number)",
    "responses": answers(400, 403, s200=json_body({"type": "integer", "minimum": 0})),
    "openapi_extra": DEVELOPMENT,
}


@router.get("/wallet/{address}/balance", response_class=PlainTextResponse, summary="Balance in winston",
              responses=answers(400, s200=WINSTON))
async def balance(request: Request, address: str = id_param("wallet address")) -> PlainTextResponse:
    return PlainTextResponse(str(node_of(request).ledger.balance(parse_address(address))))


@router.get("/wallet/{address}/last_tx", response_class=PlainTextResponse,
              summary="ID of the wallet's last accepted tx (empty when none)",
              responses=answers(400, s200=text({"type": "string", "pattern": "^([A-Za-z0-9_-]{43})?$"})))
async def last_tx(request: Request, address: str = id_param("wallet address")) -> PlainTextResponse:
    return PlainTextResponse(node_of(request).ledger.last_tx(parse_address(address)))


@router.post("/mint/{address}/{amount}", **MINT)
@router.get("/mint/{address}/{amount}", **MINT)
async def mint(request: Request, address: str = id_param("wallet address"),
               amount: int = Path(ge=0, le=MAX_MINT, description="winston to credit")) -> Response:
    node = node_of(request)
    require_dev_route(request, "/mint")
    if not node.config.enable_mint:
        raise ApiError(403, "minting is disabled on this node (serve --no-mint)")
    winston = amount
    address = parse_address(address)
    if node.ledger.balance(address) + winston > MAX_BALANCE:
        raise ApiError(400, f"minting {winston} would take the balance past {MAX_BALANCE} winston")
    new_balance = node.ledger.mint(address, winston)
    # arlocal answers the new balance as a JSON number; digits, not a float, however large it gets.
    return Response(str(new_balance), media_type="application/json")
