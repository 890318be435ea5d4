"""Data routes: `GET|HEAD /{id}`, `/raw/{id}` and `/{manifest}/{path}`.

Bytes come from `store.read`, which checks every chunk against its hash before it
is yielded; a chunk that fails ends the response early (the client sees a short
body, never wrong bytes).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.errors import ApiError, not_found
from gateway.manifests import MANIFEST_CONTENT_TYPE, MAX_MANIFEST_SIZE, ServedManifest, resolve
from gateway.node import Node, node_of
from gateway.openapi import answers, documented_id_param, route_template
from gateway.params import parse_id
from gateway.partial_stream import HELD_ONLY, serve_held, stream_partial
from gateway.ranges import ByteRange, Unsatisfiable, multipart_parts, multipart_trailer, parse_ranges
from permastore.protocol import b64url
from permastore.store import CorruptChunk

router = APIRouter(tags=["data"])
# `/raw/{id}` alone, included before every other router: it is what peers ask for, piece after
# piece, and no other route shares its first segment, so nothing needs to be tried before it.
raw_router = APIRouter(tags=["data"])

CACHE_IMMUTABLE = "public, max-age=31536000, immutable"  # data under an ID never changes
DEFAULT_CONTENT_TYPE = "application/octet-stream"
INLINE_LIMIT = 4 * 1024 * 1024  # bodies up to one batch are read at once (one worker hop), larger ones streamed
BATCH_BYTES = 4 * 1024 * 1024  # streamed bodies are read this much per worker-thread hop
UNSAFE_HEADER_TEXT = re.compile(r"[\x00-\x1f\x7f]")


def etag_of(object_id: str) -> str:
    """Given an ID, return its strong ETag."""
    return f'"{object_id}"'


def etag_matches(if_none_match: str | None, object_id: str) -> bool:
    """Given an If-None-Match header, return whether it names this ID (or is `*`)."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/").strip('"') == object_id:
            return True
    return False


def digest_headers(sha256: bytes | None) -> dict[str, str]:
    """Given the SHA-256 of the full data (or None), return the digest headers."""
    if sha256 is None:
        return {}
    return {
        "X-Ar-Io-Digest": b64url.encode(sha256),  # ar.io's header: base64url
        "Digest": "sha-256=" + base64.b64encode(sha256).decode(),  # RFC 3230: standard base64
    }


def lookup(node: Node, object_id: str, want_data: bool = True):
    """Given an ID, return its ObjectInfo, fetching it through upstreams when missing locally
    (only its verified header when not want_data)."""
    info = node.store.info(object_id)
    if (info is None or (want_data and not info.data_complete)) and node.upstream is not None:
        info = node.fetch_through(object_id, want_data) or info
    if info is None:
        raise not_found()
    return info


def _read_manifest(request: Request, node: Node, info) -> ServedManifest | None:
    """Given a manifest's ObjectInfo, return the parsed Manifest (parsed once per process), or None if it is not one."""
    if info.data_size > MAX_MANIFEST_SIZE or not info.data_complete:
        return None
    return request.app.state.manifests.get(info.id, lambda: node.store.read_range(info.id, 0, info.data_size))


def _drop_cached_copies(node: Node, exc: CorruptChunk) -> None:
    """Given a chunk found bad, forget every cached object holding the same content."""
    if node.small_cache is not None:
        node.small_cache.drop_content(exc.hash)


def _verified_pieces(node: Node, object_id: str, span: ByteRange, hash_full: bool) -> Iterator[bytes]:
    """Yield the verified bytes of span; when span is the whole object, learn its SHA-256 on the way."""
    hasher = hashlib.sha256() if hash_full else None
    try:
        for piece in node.store.read(object_id, span.start, span.end):
            if hasher is not None:
                hasher.update(piece)
            yield piece
    except CorruptChunk as exc:
        _drop_cached_copies(node, exc)
        raise
    if hasher is not None:
        node.ledger.set_digest(object_id, hasher.digest())  # best effort: never fails the read


def _next_batch(pieces: Iterator[bytes]) -> list[bytes]:
    """Given the piece iterator, return the next pieces up to about BATCH_BYTES ([] at the end)."""
    batch, size = [], 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= BATCH_BYTES:
            break
    return batch


async def _batched(first: list[bytes], pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Yield batches of pieces; the next batch is read and verified on a worker thread while this one is sent."""
    batch = first
    while batch:
        upcoming = asyncio.ensure_future(run_in_threadpool(_next_batch, pieces))
        try:
            yield batch[0] if len(batch) == 1 else b"".join(batch)
        except BaseException:  # the client went away: let the read in flight finish, then stop
            upcoming.cancel()
            raise
        batch = await upcoming


def _read_small(node: Node, object_id: str, span: ByteRange, hash_full: bool) -> tuple[bytes, bytes | None]:
    """Given a small span, return its verified bytes and, when it is the whole object, their SHA-256."""
    try:
        body = b"".join(node.store.read(object_id, span.start, span.end))
    except CorruptChunk as exc:
        _drop_cached_copies(node, exc)
        raise
    if not hash_full:
        return body, None
    digest = hashlib.sha256(body).digest()
    node.ledger.set_digest(object_id, digest)  # best effort: never fails the read
    return body, digest


def content_type_of(info) -> str:
    """Given an object's info, return its Content-Type as tagged, or octet-stream when it cannot be a header."""
    tagged = info.content_type or DEFAULT_CONTENT_TYPE
    if not tagged.isascii() or UNSAFE_HEADER_TEXT.search(tagged):
        return DEFAULT_CONTENT_TYPE  # security: a tag cannot add header lines or break the response
    return tagged


def object_headers(node: Node, info, digest: bool = True) -> dict[str, str]:
    """Given an object's info, return the headers every answer about its data carries (its digest when known)."""
    return {
        # Content-Type exactly as tagged (no charset added), so clients see what the uploader said.
        "Content-Type": content_type_of(info),
        "Accept-Ranges": "bytes",
        "ETag": etag_of(info.id),
        "Cache-Control": CACHE_IMMUTABLE,
        "X-Ar-Io-Data-Id": info.id,
        **digest_headers(node.ledger.digest(info.id) if digest else None),
    }


async def serve_object(request: Request, node: Node, info, head: bool) -> Response:
    """Given an object's info, answer with its data, honouring Range (one or several) and If-None-Match."""
    info, session = node.streaming(info)
    if not info.data_complete and (session is None or HELD_ONLY in request.headers):
        return await serve_held(request, node, session, info, head, object_headers(node, info, digest=False))
    size = info.data_size
    headers = object_headers(node, info, digest=session is None)
    if etag_matches(request.headers.get("if-none-match"), info.id):
        return Response(status_code=304, headers=headers)
    if session is not None:  # being fetched from peers: proven bytes streamed as they arrive
        return await stream_partial(request, session, info, head, headers)
    try:
        spans = parse_ranges(request.headers.get("range"), size)
    except Unsatisfiable as exc:
        refusal = {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes", "ETag": headers["ETag"]}
        raise ApiError(416, f"range not satisfiable: {exc}", refusal) from None
    if spans is not None and len(spans) > 1:
        return await serve_multipart(node, info, spans, headers, head)
    status = 200 if spans is None else 206
    span = ByteRange(0, size) if spans is None else spans[0]
    if status == 206:
        headers["Content-Range"] = span.content_range(size)
    headers["Content-Length"] = str(span.length)
    if head:
        return Response(status_code=status, headers=headers)
    hash_full = "X-Ar-Io-Digest" not in headers and span.length == size
    if span.length <= INLINE_LIMIT:
        body, learnt = await run_in_threadpool(_read_small, node, info.id, span, hash_full)
        headers.update(digest_headers(learnt))
        if status == 200 and node.small_cache is not None and info.content_type != MANIFEST_CONTENT_TYPE:
            node.small_cache.put(info.id, body, headers)
        return Response(body, status_code=status, headers=headers)
    pieces = _verified_pieces(node, info.id, span, hash_full)
    # The first batch is read before the status line goes out, so a missing or corrupt
    # start is still a proper JSON error rather than a cut-off 200.
    first = await run_in_threadpool(_next_batch, pieces)
    return StreamingResponse(_batched(first, pieces), status_code=status, headers=headers)


async def serve_multipart(node: Node, info, spans: list[ByteRange], headers: dict[str, str], head: bool) -> Response:
    """Given several ranges, answer 206 multipart/byteranges (RFC 9110 14.6), each part verified as it is read."""
    boundary = secrets.token_hex(12)
    parts = multipart_parts(spans, info.data_size, headers["Content-Type"], boundary)
    trailer = multipart_trailer(boundary)
    headers = {name: value for name, value in headers.items() if name != "Content-Type"}
    headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
    headers["Content-Length"] = str(sum(len(pre) + span.length for pre, span in parts) + len(trailer))
    if head:
        return Response(status_code=206, headers=headers)

    # The first range's first batch is read before the status line goes out, so a missing or
    # corrupt start is still a proper JSON error.
    first_pieces = _verified_pieces(node, info.id, parts[0][1], hash_full=False)
    first_batch = await run_in_threadpool(_next_batch, first_pieces)

    async def body() -> AsyncIterator[bytes]:
        for index, (preamble, span) in enumerate(parts):
            yield preamble
            if index == 0:
                pieces, batch = first_pieces, first_batch
            else:
                pieces = _verified_pieces(node, info.id, span, hash_full=False)
                batch = await run_in_threadpool(_next_batch, pieces)
            while batch:
                yield b"".join(batch)
                batch = await run_in_threadpool(_next_batch, pieces)
        yield trailer

    return StreamingResponse(body(), status_code=206, headers=headers)


def refuse_other_routes_method(request: Request) -> None:
    """Given a request that reached `/{id}...` with no ID, raise 405 when it names another route's path.

    `GET /tx` reaches the catch-all `/{object_id}` because `/tx` takes POST only; the
    answer is that route's 405 with its Allow header, not "invalid ID".
    """
    template, methods = route_template(request.app, request.scope)
    if template is not None and not template.startswith(("/{object_id}", "/raw/{object_id}")):
        raise ApiError(405, f"method {request.method} not allowed here; use {' or '.join(methods)}",
                       {"Allow": ", ".join(methods)})


async def _serve(request: Request, object_id: str, subpath: str | None, raw: bool) -> Response:
    """Given an ID and the path after it (None when there was no slash), answer the request."""
    node = node_of(request)
    if not b64url.is_id(object_id):
        refuse_other_routes_method(request)
    object_id = parse_id(object_id)
    head = request.method == "HEAD"
    info = await run_in_threadpool(lookup, node, object_id)
    is_manifest = not raw and info.content_type == MANIFEST_CONTENT_TYPE
    manifest = await run_in_threadpool(_read_manifest, request, node, info) if is_manifest else None
    if manifest is None:
        if subpath:
            raise not_found()
        return await serve_object(request, node, info, head)
    if subpath is None:
        # Relative links in the index only work under the trailing slash, as on arweave.net.
        target = f"/{object_id}/" + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(target, status_code=301)
    target_id = resolve(manifest, subpath)
    if target_id is None:
        raise not_found(f"path {subpath[:200]!r} is not in manifest {object_id}")
    try:
        target = await run_in_threadpool(lookup, node, target_id)
    except ApiError as exc:
        if exc.status != 404:
            raise
        reason = f"path {subpath[:200]!r} of manifest {object_id} names {target_id}, which is not available here"
        raise not_found(reason) from None
    response = await serve_object(request, node, target, head)
    response.headers["X-Ar-Io-Manifest-Id"] = object_id
    return response


DATA_HEADERS = {
    "ETag": {"schema": {"type": "string"}, "description": "the ID, quoted: data under an ID never changes"},
    "X-Ar-Io-Data-Id": {"schema": {"type": "string"}},
    "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
}
ANY_BYTES: dict[str, Any] = {"content": {"*/*": {"schema": {}}}}  # the data as uploaded, with the Content-Type it was tagged with
DATA = answers(206, 304, 400, 404, 416, 500, 502, s200={**ANY_BYTES, "headers": DATA_HEADERS})
DATA[206].update({**ANY_BYTES, "description": "One range (Content-Range), or several as multipart/byteranges"})
RANGE_HEADER = {"parameters": [{
    "name": "Range", "in": "header", "required": False,
    "description": "bytes=first-last[, ...]: one range answers 206 with Content-Range, several 206 multipart/byteranges; "
                   "a malformed bytes range or none inside the object 416; another unit is ignored (RFC 9110 14.2)",
    "schema": {"type": "string"},
}]}
OBJECT_ID = documented_id_param("a tx or data item ID")


@raw_router.get("/raw/{object_id}", summary="Raw data of a tx or data item (no manifest resolution)", responses=DATA,
            openapi_extra=RANGE_HEADER)
async def raw_data(request: Request, object_id: str = OBJECT_ID) -> Response:
    return await _serve(request, object_id, None, raw=True)


@router.get("/{object_id}", summary="Data of a tx or data item by ID (Range, If-None-Match); a manifest redirects to /{id}/",
            responses={**DATA, **answers(301)}, openapi_extra=RANGE_HEADER)
async def data(request: Request, object_id: str = OBJECT_ID) -> Response:
    return await _serve(request, object_id, None, raw=False)


@router.get("/{object_id}/{subpath:path}", summary="A path inside a path manifest (arweave/paths 0.1.0 and 0.2.0)",
            responses=DATA, openapi_extra=RANGE_HEADER)
async def manifest_path(request: Request, subpath: str, object_id: str = OBJECT_ID) -> Response:
    return await _serve(request, object_id, subpath, raw=False)
