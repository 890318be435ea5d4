"""Peer routes: `GET /leaves/{id}`, between permastore nodes (`GET /peers` is in routes/info.py).

`/leaves/{id}` is the faster path of issue 8: a format-2 tx's whole leaf list in one
answer, 40 bytes a chunk (the chunk's SHA-256, then its end offset as a big-endian u64),
in chunk order. It proves nothing by itself: the fetching node rebuilds the signed
data_root from it (`permastore.sources.proofs`) before using it, then takes raw bytes
from `GET /raw/{id}` with `Range` and checks each chunk against its leaf as it arrives.
A node still fetching the tx (or holding part of it) serves the leaf list it proved, and says
in `X-Permastore-Held` which byte spans it holds: a peer asks it only for those, with
`X-Permastore-Held-Only: 1` on `/raw/{id}` (answered from held chunks at once, or 404).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from gateway.errors import not_found
from gateway.node import Node, node_of
from gateway.openapi import answers, binary, id_param
from gateway.params import parse_id
from permastore.protocol import b64url
from permastore.sources.proofs import encode_leaves
from permastore.store import NotFound, StoreError

router = APIRouter(tags=["peers"])


MAX_HELD_SPANS = 256  # a partial object's held spans listed on /leaves (more: the first ones, a subset)


def held_spans(node: Node, object_id: str) -> str:
    """Given a partially held tx, return its held bytes as "first-last,..." (inclusive, merged)."""
    spans: list[list[int]] = []
    for offset, size in node.store.held_ranges(object_id):
        if spans and spans[-1][1] == offset:
            spans[-1][1] = offset + size
        elif len(spans) < MAX_HELD_SPANS:
            spans.append([offset, offset + size])
        else:
            break
    return ",".join(f"{start}-{end - 1}" for start, end in spans)


def leaf_list(node: Node, object_id: str) -> tuple[bytes, bytes, int, str | None]:
    """Given a tx ID, return (leaf list body, data_root, data_size, held spans: None when held
    whole or not servable yet) or raise 404."""
    info = node.store.info(object_id)
    if info is None or info.kind != "tx" or info.format != 2 or info.data_size == 0:
        raise not_found("no leaf list: not a format-2 tx with data held here")
    if info.data_complete:
        try:
            return encode_leaves(node.store.chunk_leaves(object_id)), info.data_root, info.data_size, None
        except (NotFound, StoreError):
            raise not_found() from None
    partial = node.store.partial_info(object_id)
    if partial is None or partial.leaves is None:
        raise not_found("no leaf list yet: the data is not held here")
    held = held_spans(node, object_id) if partial.servable else None  # a partial peer: what it serves now
    return partial.leaves, info.data_root, info.data_size, held


LEAF_HEADERS = {
    "X-Data-Root": {"schema": {"type": "string"}}, "X-Data-Size": {"schema": {"type": "string"}},
    "X-Permastore-Held": {"schema": {"type": "string"}, "description": "a partially held tx: the byte spans held"
                          " and served now (first-last, comma-separated); absent: all of it"},
}  # fmt: skip


@router.get("/leaves/{object_id}", summary="A format-2 tx's leaf list: SHA-256 and end offset per chunk (binary)",
            responses=answers(400, 404, s200={**binary(), "headers": LEAF_HEADERS}))
async def leaves(request: Request, object_id: str = id_param("a format-2 transaction ID")) -> Response:
    node = node_of(request)
    body, data_root, data_size, held = await run_in_threadpool(leaf_list, node, parse_id(object_id))
    headers = {"X-Data-Root": b64url.encode(data_root), "X-Data-Size": str(data_size)}
    if held is not None:
        headers["X-Permastore-Held"] = held
    return Response(body, media_type="application/octet-stream", headers=headers)
