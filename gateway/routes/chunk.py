"""Chunk routes: `POST /chunk` (upload, proof checked first) and `GET /chunk/{offset}[/data]`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.bodies import read_json_object
from gateway.errors import bad_request, not_found
from gateway.node import Node, node_of
from gateway.params import MAX_SQL_INTEGER, parse_uint
from permastore.protocol import b64url, merkle
from permastore.protocol.errors import InvalidProof, MalformedData
from permastore.store import NotFound

router = APIRouter(tags=["chunks"])

# The Arweave node's limits and reason strings; arweave-js's uploader stops retrying on these.
MAX_DATA_PATH_SIZE = 256 * 1024
MAX_OFFSET = 2**256
MAX_DATA_SIZE = 2**256  # the parse bound; the node's own limit (store.max_data_size) is far lower


def _b64_field(doc: dict, name: str) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise bad_request(f"invalid_json: field {name!r} must be a base64url string")
    try:
        return b64url.decode(value)
    except MalformedData as exc:
        raise bad_request(f"invalid_json: field {name!r}: {exc}") from None


def _int_field(doc: dict, name: str) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).isdigit() or not str(value).isascii():
        raise bad_request(f"invalid_json: field {name!r} must be a non-negative decimal string")
    return int(value)


def parse_chunk_post(doc: dict) -> tuple[bytes, int, int, bytes, bytes]:
    """Given the POST /chunk JSON, return (data_root, data_size, offset, chunk, data_path) or raise 400."""
    data_root = _b64_field(doc, "data_root")
    data_path = _b64_field(doc, "data_path")
    chunk = _b64_field(doc, "chunk")
    if len(data_root) != merkle.HASH_SIZE:
        raise bad_request("invalid_json: data_root must be 32 bytes")
    if len(chunk) > merkle.MAX_CHUNK_SIZE:
        raise bad_request("chunk_too_big")
    if len(data_path) > MAX_DATA_PATH_SIZE:
        raise bad_request("data_path_too_big")
    data_size = _int_field(doc, "data_size")
    offset = _int_field(doc, "offset")
    if offset >= MAX_OFFSET:
        raise bad_request("offset_too_big")
    if data_size >= MAX_DATA_SIZE:
        raise bad_request("data_size_too_big")
    if offset >= data_size:
        raise bad_request("invalid_proof: offset is past the end of the data")
    return data_root, data_size, offset, chunk, data_path


def store_chunk(node: Node, doc: dict) -> None:
    """Given the POST /chunk JSON, validate its data_path against data_root, then store the chunk."""
    data_root, data_size, offset, chunk, data_path = parse_chunk_post(doc)
    if data_size > node.store.max_data_size:
        raise bad_request(f"data_size_too_big: this node takes at most {node.store.max_data_size} bytes")
    try:
        # security: the store validates the proof and the chunk's hash before writing a byte
        node.store.put_chunk(data_root, data_size, offset, chunk, data_path)
    except InvalidProof:
        raise bad_request("invalid_proof") from None
    except NotFound:
        raise bad_request("data_root_not_found") from None


@router.post("/chunk", summary="Upload one chunk of a posted tx, with its data_path")
async def post_chunk(request: Request) -> Response:
    node = node_of(request)
    doc = await read_json_object(request, node.config.max_chunk_body)
    await run_in_threadpool(store_chunk, node, doc)
    return PlainTextResponse("OK")


def weave_chunk(node: Node, offset_text: str):
    """Given a weave offset (path text), return the WeaveChunk holding it or raise 400/404."""
    offset = parse_uint(offset_text, "offset", MAX_SQL_INTEGER)  # the store's offsets are SQLite integers
    try:
        found = node.store.chunk_at_weave_offset(offset)
    except NotFound:
        found = None
    if found is None:
        raise not_found()
    return found


def chunk_json(node: Node, offset_text: str) -> dict:
    """Given a weave offset, return the Arweave node's `/chunk/{offset}` JSON for it."""
    found = weave_chunk(node, offset_text)
    return {
        "chunk": b64url.encode(found.chunk),
        "data_path": b64url.encode(found.data_path),
        "tx_path": b64url.encode(node.miner.tx_path(found.tx_id)),
        "packing": "unpacked",
    }


@router.get("/chunk/{offset}", summary="The chunk holding a weave offset, with data_path and tx_path")
async def get_chunk(offset: str, request: Request) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(chunk_json, node_of(request), offset))


@router.get("/chunk/{offset}/data", summary="The raw bytes of the chunk holding a weave offset")
async def get_chunk_data(offset: str, request: Request) -> Response:
    found = await run_in_threadpool(weave_chunk, node_of(request), offset)
    return Response(found.chunk, media_type="application/octet-stream")
