"""Transaction routes: `GET /tx/{id}[/status|/offset|/data|/{field}]`, `POST /tx`, `/tx/pending`."""

from __future__ import annotations

import json

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.bodies import read_json_object
from gateway.errors import ApiError, bad_request, not_found
from gateway.ingest import accept_item, accept_tx
from gateway.item_json import data_item_json
from gateway.node import Node, node_of
from gateway.openapi import (
    BLOCK_HASH_PATTERN,
    ID_PATTERN,
    answers,
    binary,
    id_param,
    json_body,
    request_body,
    text,
)
from gateway.params import parse_id
from gateway.routes.data import lookup
from permastore.protocol import b64url

router = APIRouter(tags=["transactions"])

TX_FIELDS = ("id", "last_tx", "owner", "tags", "target", "quantity", "data_size", "data_root", "reward", "signature", "format")
MAX_TX_DATA_B64 = 12 * 1024 * 1024  # /tx/{id}/data inlines at most this much, like the Arweave node
ITEM_CONTENT_TYPES = ("application/octet-stream",)


def pending_response() -> PlainTextResponse:
    """Return the Arweave node's answer for a tx not yet in a block."""
    return PlainTextResponse("Pending", status_code=202)


def l1_info(node: Node, tx_id: str):
    """Given a tx ID, return the ObjectInfo of that L1 transaction or raise 404."""
    info = lookup(node, parse_id(tx_id), want_data=False)  # the verified header, with or without its data
    if info.kind != "tx":
        raise not_found()
    return info


def header_json(node: Node, info) -> dict:
    """Given an L1 tx's info, return its `/tx/{id}` JSON (format-2 data is served apart, as by the node)."""
    doc = json.loads(node.store.raw_header(info.id))
    if doc.get("format") in (2, "2"):
        doc["data"] = ""
    return doc


MAX_BUNDLE_DEPTH = 16  # bundles inside bundles: deeper nesting than this is not followed
TX_JSON = {"type": "object", "required": ["format", "id", "last_tx", "owner", "tags", "target", "quantity", "data",
                                          "data_size", "data_root", "reward", "signature"]}
STATUS = {"type": "object", "required": ["block_height", "block_indep_hash", "number_of_confirmations"], "properties": {
    "block_height": {"type": "integer", "minimum": 0},
    "block_indep_hash": {"type": "string", "pattern": BLOCK_HASH_PATTERN},
    "number_of_confirmations": {"type": "integer", "minimum": 0},
}}
OFFSET = {"type": "object", "required": ["size", "offset"], "properties": {
    "size": {"type": "string", "pattern": "^[0-9]+$"}, "offset": {"type": "string", "pattern": "^[0-9]+$"}}}
ITEM_ACCEPTED = {"type": "object", "required": ["id", "owner", "data_size"], "properties": {
    "id": {"type": "string", "pattern": ID_PATTERN}, "owner": {"type": "string"}, "data_size": {"type": "integer"}}}
TX_ID = id_param("a transaction ID")
FIELD_PATTERN = "^(" + "|".join(TX_FIELDS) + ")$"


def status_holder(node: Node, info):
    """Given a tx or data item, return the ObjectInfo whose block status answers for it.

    An L1 tx answers for itself. A data item answers with the status of the L1 tx whose
    bundle holds it (nested bundles followed up to MAX_BUNDLE_DEPTH), as ar.io does; an
    item posted here on its own answers with the block this node put it in.
    """
    for _ in range(MAX_BUNDLE_DEPTH):
        if info.kind == "tx" or not info.bundled_in:
            return info
        parent = node.store.info(info.bundled_in)
        if parent is None:
            return info
        info = parent
    return info


@router.get("/tx/pending", summary="IDs of accepted transactions not yet in a block",
              responses=answers(s200=json_body({"type": "array", "items": {"type": "string", "pattern": ID_PATTERN}})))
async def pending(request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(node_of(request).miner.pending_ids))


@router.get("/unconfirmed_tx/{tx_id}", summary="The signed tx header, pending or not (as the Arweave node's mempool route)",
              responses=answers(400, 404, 502, s200=json_body(TX_JSON)))
async def unconfirmed_tx(request: Request, tx_id: str = TX_ID) -> JSONResponse:
    node = node_of(request)
    info = await run_in_threadpool(l1_info, node, tx_id)
    return JSONResponse(await run_in_threadpool(header_json, node, info))


@router.get("/tx/{tx_id}", summary="The signed tx header (202 Pending until mined)",
              responses=answers(202, 400, 404, 502, s200=json_body(TX_JSON)))
async def get_tx(request: Request, tx_id: str = TX_ID) -> Response:
    node = node_of(request)
    info = await run_in_threadpool(lookup, node, parse_id(tx_id), False)
    if info.kind == "item":  # e.g. a small `permastore put`: say what it is, not 404 (gateway/item_json.py)
        return JSONResponse(data_item_json(info))
    if await run_in_threadpool(node.confirmation, info) is None:
        return pending_response()
    return JSONResponse(await run_in_threadpool(header_json, node, info))


@router.get("/tx/{tx_id}/status",
              summary="Block height, hash and confirmations (202 Pending until mined); a data item answers with its bundle's",
              responses=answers(202, 400, 404, 502, s200=json_body(STATUS)))
async def tx_status(request: Request, tx_id: str = TX_ID) -> Response:
    node = node_of(request)
    info = await run_in_threadpool(lookup, node, parse_id(tx_id), False)  # a header is enough: no data fetched
    holder = await run_in_threadpool(status_holder, node, info)
    confirmed = await run_in_threadpool(node.confirmation, holder)
    if confirmed is None:
        return pending_response()
    height, indep_hash, confirmations = confirmed
    return JSONResponse({"block_height": height, "block_indep_hash": indep_hash, "number_of_confirmations": confirmations})


@router.get("/tx/{tx_id}/offset", summary="End offset of the tx's data in the weave and its size",
              responses=answers(400, 404, 502, s200=json_body(OFFSET)))
async def tx_offset(request: Request, tx_id: str = TX_ID) -> JSONResponse:
    info = await run_in_threadpool(l1_info, node_of(request), tx_id)
    if info.weave_offset is None or not info.data_complete:
        raise not_found("no weave offset yet: the tx is pending or its data incomplete")
    return JSONResponse({"size": str(info.data_size), "offset": str(info.weave_offset)})


@router.get("/tx/{tx_id}/data", response_class=PlainTextResponse, summary="The data, base64url (up to 12 MiB)",
              responses=answers(400, 404, s200=text({"type": "string", "pattern": "^[A-Za-z0-9_-]*$"})))
async def tx_data(request: Request, tx_id: str = TX_ID) -> PlainTextResponse:
    node = node_of(request)
    info = await run_in_threadpool(node.store.info, parse_id(tx_id))
    if info is None:
        raise not_found()
    if not info.data_complete:
        raise not_found("data not available yet: chunks are still missing")
    if info.data_size > MAX_TX_DATA_B64:
        raise ApiError(400, f"tx_data_too_big: {info.data_size} bytes; fetch /{info.id} instead")
    data = await run_in_threadpool(node.store.read_range, info.id, 0, info.data_size)
    return PlainTextResponse(b64url.encode(data))


@router.get("/tx/{tx_id}/{field}", summary="One field of the tx header (text; tags as JSON)",
              responses=answers(202, 400, 404, 502, s200={"content": {"text/plain": {"schema": {"type": "string"}},
                                                                     "application/json": {"schema": {"type": "array"}}}}))
async def tx_field(request: Request, tx_id: str = TX_ID, field: str = Path(pattern=FIELD_PATTERN)) -> Response:
    if field not in TX_FIELDS:
        raise bad_request(f"unknown field {field!r:.40}; one of {', '.join(TX_FIELDS)}, data, status, offset")
    node = node_of(request)
    info = await run_in_threadpool(l1_info, node, tx_id)
    if await run_in_threadpool(node.confirmation, info) is None:
        return pending_response()
    value = (await run_in_threadpool(header_json, node, info)).get(field, "")
    if isinstance(value, (list, dict)):
        return JSONResponse(value)
    return PlainTextResponse(str(value))


POST_TX_BODY = request_body(
    {"application/json": {"type": "object", "description": "a signed format-2 (or 1) transaction, as arweave-js posts it"},
     "application/octet-stream": {"type": "string", "format": "binary", "description": "a signed binary ANS-104 data item"}},
    "A signed L1 transaction (JSON) or a signed ANS-104 data item (octet-stream); the signature is checked before anything is kept",
)


@router.post("/tx", summary="Post a signed format-2 tx (JSON) or a signed ANS-104 data item (octet-stream)",
             openapi_extra=POST_TX_BODY,
             responses=answers(208, 400, 408, 413, 503, 507, s200={"content": {
                 "text/plain": {"schema": {"type": "string", "enum": ["OK"]}},
                 "application/json": {"schema": ITEM_ACCEPTED}}}))
async def post_tx(request: Request) -> Response:
    node = node_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ITEM_CONTENT_TYPES:
        info = await accept_item(request, node)
        return JSONResponse({"id": info.id, "owner": info.owner_address, "data_size": info.data_size})
    doc = await read_json_object(request, node.config.max_tx_body)
    status = await run_in_threadpool(accept_tx, node, doc)
    if status == 208:
        return PlainTextResponse("Transaction already processed.", status_code=208)
    return PlainTextResponse("OK")


@router.get("/item/{item_id}/header", summary="A stored data item's signed binary ANS-104 header (octet-stream)",
              responses=answers(400, 404, s200=binary()))
async def item_header(request: Request, item_id: str = id_param("a data item ID")) -> Response:
    """Serve what a reading node needs to verify an item before storing it (permastore.sources)."""
    node = node_of(request)

    def header() -> bytes:
        info = node.store.info(parse_id(item_id))
        if info is None or info.kind != "item":
            raise not_found()
        return node.store.raw_header(info.id)

    return Response(await run_in_threadpool(header), media_type="application/octet-stream")
