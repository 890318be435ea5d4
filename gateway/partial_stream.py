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


async def stream_partial(request: Request, session, info, head: bool, headers: dict) -> Response:
    """Given a running, chunk-proven fetch of info's object, answer GET/HEAD with its bytes as they arrive."""
    size = info.data_size
    try:
        span = parse_range(request.headers.get("range"), size)
    except Unsatisfiable:
        refusal = {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes", "ETag": headers["ETag"]}
        raise ApiError(416, "range not satisfiable", refusal) from None
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
