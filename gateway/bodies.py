"""Request bodies read with a size limit: past it the client gets 413 and nothing is kept."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import Request

from gateway.errors import ApiError, bad_request


def too_large(limit: int) -> ApiError:
    """Given the limit, return the 413 error (the connection closes after it: the rest of the body is not read)."""
    return ApiError(413, f"request body larger than {limit} bytes", {"Connection": "close"})


def declared_length(request: Request, limit: int) -> int | None:
    """Given a request, return its Content-Length; 413 when it exceeds limit, 400 when malformed."""
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise bad_request("invalid Content-Length")
    length = int(raw)
    if length > limit:
        raise too_large(limit)
    return length


async def limited_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """Given a request, yield its body pieces, raising 413 once more than limit bytes came."""
    declared_length(request, limit)
    received = 0
    async for piece in request.stream():
        received += len(piece)
        if received > limit:  # a missing or lying Content-Length cannot get past the limit
            raise too_large(limit)
        if piece:
            yield piece


async def read_limited(request: Request, limit: int) -> bytes:
    """Given a request, return its whole body, at most limit bytes (else 413)."""
    parts = [piece async for piece in limited_stream(request, limit)]
    return b"".join(parts)


def parse_json(body: bytes, reason: str = "invalid_json") -> object:
    """Given a request body, return it parsed as JSON, else raise a 400 with reason.

    Nesting past the parser's depth (e.g. 20,000 `[`) is a refusal like any other malformed
    document, not a server fault.
    """
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad_request(reason) from None
    except RecursionError:
        raise bad_request(f"{reason}: JSON nested too deeply") from None


async def read_json_object(request: Request, limit: int) -> dict:
    """Given a request, return its body parsed as a JSON object, else a 400 saying why."""
    body = await read_limited(request, limit)
    doc = parse_json(body)  # "invalid_json": the Arweave node's reason, which arweave-js knows
    if not isinstance(doc, dict):
        raise bad_request("invalid_json")
    return doc
