"""Serving an object while it is fetched from peers: verified bytes streamed in order as they arrive.

The response starts once the tx's header is verified (its size and Content-Type are
signed); each piece is read from the fetch session only after its chunks were proven
and written, and the chunks a reader waits for are fetched first (Range requests too).
Waiting happens on the event loop (the fetch threads wake it), never on a worker thread.
If the fetch fails midway the connection is dropped: the client sees a short body,
never an unproven byte.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.errors import ApiError
from gateway.ranges import ByteRange, Unsatisfiable, parse_range

log = logging.getLogger("gateway.partial_stream")

STALL_S = 60.0  # no new byte for this long: the stream is given up
PIECE = 4 * 1024 * 1024


async def wait_readable(session, position: int, timeout: float = STALL_S) -> int:
    """Given a fetch session and an offset, wait until bytes from it are readable; return how many."""
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(woken.set)

    session.add_listener(wake)
    try:
        session.want(position)
        deadline = loop.time() + timeout
        while True:
            woken.clear()
            count = session.available(position, PIECE)  # raises when the fetch failed
            if count:
                return count
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no byte at {position} of {session.id} for {timeout:.0f} s")
            try:
                await asyncio.wait_for(woken.wait(), min(left, 1.0))
            except TimeoutError:
                pass
    finally:
        session.remove_listener(wake)


async def _pieces(session, span: ByteRange) -> AsyncIterator[bytes]:
    position = span.start
    while position < span.end:
        count = await wait_readable(session, position)
        end = min(position + count, span.end)
        yield await run_in_threadpool(session.read, position, end)
        position = end


def _requested_span(request: Request, size: int, headers: dict) -> ByteRange | None:
    """Given a request and the object's size, return its one Range (None: the whole); 416 when unsatisfiable."""
    try:
        return parse_range(request.headers.get("range"), size)
    except Unsatisfiable:
        refusal = {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes", "ETag": headers["ETag"]}
        raise ApiError(416, "range not satisfiable", refusal) from None


async def stream_partial(request: Request, session, info, head: bool, headers: dict) -> Response:
    """Given a running, chunk-proven fetch of info's object, answer GET/HEAD with its bytes as they arrive."""
    size = info.data_size
    span = _requested_span(request, size, headers)
    status = 200 if span is None else 206
    if span is None:
        span = ByteRange(0, size)
    else:
        headers["Content-Range"] = span.content_range(size)
    headers["Content-Length"] = str(span.length)
    headers["X-Permastore-Fetching"] = "1"  # served while it is fetched from peers, each chunk proven
    if head:
        return Response(status_code=status, headers=headers)
    pieces = _pieces(session, span)
    try:
        first = await pieces.__anext__() if span.length else b""  # a failure before any byte is still a clean error
    except (TimeoutError, OSError) as exc:
        raise ApiError(504, f"peers sent nothing in time: {exc}") from None
    except Exception as exc:
        raise ApiError(502, f"peers could not give verified data: {exc}") from None

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for piece in pieces:
            yield piece

    return StreamingResponse(body(), status_code=status, headers=headers)


# -- held ranges, answered at once (a peer's fetch engine, a partially held object) ----------------

HELD_ONLY = "x-permastore-held-only"  # sent by a peer's fetch engine: answer from held chunks now, or 404
NOT_HELD = "bytes not held here (the object is partially held)"
NO_DATA = "data not held here: chunks are still missing (none fetched yet)"


async def serve_held(request: Request, node, session, info, head: bool, headers: dict) -> Response:
    """Given an object not complete here (a fetch may be running) and one Range, answer it from the
    chunks held now: proven when they arrived, checked against their BLAKE3 as they are read.
    404 when a byte of the span is not held, or nothing is servable before the object completes."""
    size = info.data_size
    span = _requested_span(request, size, headers)
    if span is None or not span.length:
        raise ApiError(404, "data not available yet: chunks are still missing")
    read, reason = await run_in_threadpool(_held_reader, node, session, info.id, span)
    if read is None:
        raise ApiError(404, reason)
    headers["Content-Range"] = span.content_range(size)
    headers["Content-Length"] = str(span.length)
    if head:
        return Response(status_code=206, headers=headers)
    first = await run_in_threadpool(read, span.start, min(span.start + PIECE, span.end))

    async def body() -> AsyncIterator[bytes]:
        yield first
        position = span.start + len(first)
        while position < span.end:
            end = min(position + PIECE, span.end)
            yield await run_in_threadpool(read, position, end)
            position = end

    return StreamingResponse(body(), status_code=206, headers=headers)


def _held_reader(node, session, object_id: str, span: ByteRange):
    """Given a span, return (read(start, end) -> verified bytes, None) when all of it is held now,
    else (None, why not)."""
    from permastore.store import NotFound, StoreError

    if session is not None:
        try:
            if session.available(span.start, span.length) < span.length:
                return None, NOT_HELD
        except StoreError:  # the fetch failed: what it left is read from the store below
            pass
        else:
            return session.read, None
    partial = node.store.partial_info(object_id)
    if partial is None:
        return None, NO_DATA  # only the header is here: "partially held" would mislead
    if not partial.servable:
        return None, NOT_HELD
    try:
        node.store.read_partial(object_id, span.start, span.end)  # checks the span's ranges only; reads nothing
    except NotFound:
        return None, NOT_HELD
    return (lambda start, end: b"".join(node.store.read_partial(object_id, start, end))), None
