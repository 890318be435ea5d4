"""Remote herder workers over HTTP: lease a queued call, renew the lease, answer it with a signed Result.

Every request is signed by the worker's wallet (see `inference.herder.leases`): lease,
heartbeat and give-up requests are ANS-104 items of JSON addressed to this head; a
result is the worker's signed Result item itself. Only wallets named by
`serve --allow-worker` get anything (403 otherwise); the herder's state is in
`GET /herder/info`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from gateway.bodies import read_limited
from gateway.errors import ApiError
from gateway.inference_api.schemas import openapi_errors
from gateway.inference_api.state import service_of
from inference.herder.leases import LeaseRefused, WorkerRequest
from inference.herder.remote import RemoteHerd

router = APIRouter()
MAX_REQUEST_BODY = 1 << 20  # a lease request, or text streamed since the last heartbeat
DISCONNECT_POLL_S = 0.1
MAX_RESULT_BODY = 16 << 20  # a Result record (inference.records.MAX_RECORD_BYTES) and its header
SIGNED = {"requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                          "description": "an ANS-104 item signed by the worker's wallet", "required": True}}
ERRORS = openapi_errors(400, 401, 403, 409, 413, 503)


def _herd(request: Request) -> RemoteHerd:
    return service_of(request).remote


async def _verified(request: Request, herd: RemoteHerd) -> WorkerRequest:
    raw = await read_limited(request, MAX_REQUEST_BODY)
    try:
        return await run_in_threadpool(herd.verifier.verify, raw)
    except LeaseRefused as exc:
        raise ApiError(exc.status, exc.reason) from None


async def _run(function, *args: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args)
    except LeaseRefused as exc:
        raise ApiError(exc.status, exc.reason) from None


@router.post("/herder/lease", openapi_extra=SIGNED, responses={204: {"description": "no call within wait_s"}, **ERRORS})
async def lease(request: Request) -> Any:
    """Wait up to the request's `wait_s` for a queued call; answer its lease, or 204 when none came."""
    herd = _herd(request)
    signed = await _verified(request, herd)
    wait_s = signed.body.get("wait_s", 0)
    if not isinstance(wait_s, (int, float)) or isinstance(wait_s, bool):
        raise ApiError(400, "wait_s must be a number of seconds")
    gone = threading.Event()  # the worker hung up (killed while it waited): lease it nothing
    watcher = asyncio.create_task(_watch_disconnect(request, gone))
    try:
        grant = await _run(herd.lease, signed, float(wait_s), gone.is_set)
    finally:
        watcher.cancel()
    return Response(status_code=204) if grant is None else grant


async def _watch_disconnect(request: Request, gone: threading.Event) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_S)
    gone.set()


@router.post("/herder/leases/{lease_id}/heartbeat", openapi_extra=SIGNED, responses=ERRORS)
async def heartbeat(lease_id: str, request: Request) -> dict[str, Any]:
    """Renew a lease (409 once it has ended: the worker stops); relay the text streamed since the last one."""
    herd = _herd(request)
    signed = await _verified(request, herd)
    return await _run(herd.heartbeat, signed, lease_id)


@router.post("/herder/leases/{lease_id}/give-up", openapi_extra=SIGNED, responses=ERRORS)
async def give_up(lease_id: str, request: Request) -> dict[str, Any]:
    """The worker cannot run its call (e.g. the model cannot be fetched): the call goes to someone else."""
    herd = _herd(request)
    signed = await _verified(request, herd)
    await _run(herd.give_up, signed, lease_id)
    return {"lease": lease_id, "given_up": True}


@router.post("/herder/leases/{lease_id}/result", openapi_extra=SIGNED, responses=openapi_errors(400, 403, 409, 413, 422, 503))
async def result(lease_id: str, request: Request, next_wait_s: float = 0.0) -> Any:
    """Answer a leased call with the worker's signed Result item; the first valid one wins, later ones get 409.

    With `next_wait_s` > 0 the answer also holds the worker's next lease (`next`, null when no call
    came within that long): the accepted Result stands for a lease request, saving one round trip.
    """
    herd = _herd(request)
    raw = await read_limited(request, MAX_RESULT_BODY)
    # One thread hop for the whole exchange (check, store, deliver, wait for the next call):
    # a worker's request per call is the remote path's own cost on the head. No disconnect
    # watcher here (it costs the loop a task per call): a next lease that reaches no one lapses
    # unconfirmed and goes back to the queue without using up an attempt.
    answer = await _run(herd.complete_and_lease, lease_id, raw, next_wait_s)
    return Response(json.dumps(answer).encode(), media_type="application/json")
