"""AO's units over HTTP: `GET /ao`, the MU at `POST /ao/mu`, the CU under `/ao/cu`.

So that an unmodified `@permaweb/aoconnect` (legacy mode) works with
`connect({MODE: 'legacy', MU_URL: node + '/ao/mu', CU_URL: node + '/ao/cu', GATEWAY_URL: node})`.
aoconnect reads result and dry-run bodies whatever their status, so every answer is JSON
(errors `{"error": ...}`); a result is answered once its call has finished, never "in
progress", with a space sent every few seconds meanwhile so no client timeout fires
(leading whitespace is valid JSON).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.bodies import read_limited
from gateway.errors import ApiError
from gateway.inference_api import body_schemas
from gateway.inference_api.callers import MAX_REQUEST_BODY, is_loopback, parse_json_object
from gateway.inference_api.errors import inference_error_response
from gateway.inference_api.schemas import openapi_errors
from gateway.inference_api.state import blocking, service_of
from gateway.openapi import ID_PATTERN, documented_id_param
from inference.ao.publishing import publish_module, publish_scheduler_location
from inference.ao.units import AoCall, AoUnits
from inference.errors import InferenceError
from permastore.protocol.wallet import address_of

log = logging.getLogger("gateway.ao")
KEEPALIVE_S = 10.0  # well inside undici's 300 s header and body timeouts
ERRORS = openapi_errors(400, 402, 403, 404, 413, 429, 503)
PROCESS_QUERY = {"name": "process-id", "in": "query", "required": True, "description": "the process the message went to",
                 "schema": {"type": "string", "pattern": ID_PATTERN}}
UNIT_ROUTES = {"cu/result": ["GET"], "cu/results": ["GET"], "cu/dry-run": ["POST"], "mu/monitor": ["DELETE", "POST"]}


@dataclass(frozen=True)
class AoIdentity:
    """The node's AO records: its Module, its scheduler address and Scheduler-Location (None without a URL)."""

    module: str
    scheduler: str
    scheduler_location: str | None
    url: str | None


def publish(node: Any) -> AoIdentity:
    """Given the running node, find or write its Module and Scheduler-Location records."""
    store, url = node.store, getattr(node.config, "public_url", None)
    module = publish_module(store)
    location = publish_scheduler_location(store, url) if url else None
    return AoIdentity(module, address_of(store.signer.owner), location, url)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Nested after the inference service's: publish the node's AO records (once per wallet and URL)."""
    app.state.ao_identity = await run_in_threadpool(publish, app.state.node)
    app.state.ao_units = None
    yield
    app.state.ao_units = None


router = APIRouter(lifespan=lifespan)


def units_of(request: Request) -> AoUnits:
    """Given a request, return the node's AO units (503 while inference is not running)."""
    service = service_of(request)
    units = request.app.state.ao_units
    if units is None or units.service is not service:
        units = request.app.state.ao_units = AoUnits(service, request.app.state.ao_identity.module)
    return units


def _base(request: Request) -> str:
    identity: AoIdentity = request.app.state.ao_identity
    return identity.url or str(request.base_url).rstrip("/")


@router.get("/ao")
async def ao_info(request: Request) -> dict[str, Any]:
    """The node's AO units: {module, scheduler, mu, cu}, for `connect()` and `spawn()`."""
    identity: AoIdentity = request.app.state.ao_identity
    base = _base(request)
    return {"module": identity.module, "scheduler": identity.scheduler, "mu": f"{base}/ao/mu",
            "cu": f"{base}/ao/cu", "gateway": base, "scheduler_location": identity.scheduler_location}


# ---------------------------------------------------------------------------- MU


@router.post("/ao/mu", status_code=202, responses=ERRORS, openapi_extra={"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    "description": "a signed ANS-104 item: a spawn (Type Process) or a message (Type Message)"}})
@router.post("/ao/mu/", status_code=202, responses=ERRORS, include_in_schema=False)
async def messenger(request: Request) -> JSONResponse:
    """Take a signed ANS-104 item: a spawn (Type Process) or a message (Type Message) -> 202 {message, id}."""
    if "assign" in request.query_params:
        raise ApiError(400, "assignments are not supported by this MU: send the message itself")
    units = units_of(request)
    raw = await read_limited(request, MAX_REQUEST_BODY)
    if not raw:
        raise ApiError(400, "the body must be a signed ANS-104 data item (application/octet-stream)")
    return JSONResponse(await blocking(request, units.accept, raw), status_code=202)


@router.post("/ao/mu/monitor/{process_id}", responses=ERRORS, operation_id="monitor_process")
@router.delete("/ao/mu/monitor/{process_id}", responses=ERRORS, operation_id="unmonitor_process")
async def monitor(process_id: str) -> JSONResponse:
    """Cron monitoring: not offered (a llama process has no cron messages)."""
    raise ApiError(400, "monitor is not supported: llama processes run only the messages sent to them")


# ---------------------------------------------------------------------------- CU


def _watch(future: Future) -> asyncio.Future:
    """Given a concurrent Future, return an asyncio one that follows it; cancelling it never cancels the call."""
    loop = asyncio.get_running_loop()
    mirror: asyncio.Future = loop.create_future()

    def settle() -> None:
        if not mirror.done():
            mirror.set_result(None)

    def relay(_: Future) -> None:
        loop.call_soon_threadsafe(settle)

    future.add_done_callback(relay)
    return mirror


def _answer_when_done(future: Future, body: Callable[[], Any], request: Request) -> StreamingResponse:
    """Given work in progress and how to build its JSON once done, answer 200, spaces until then."""
    async def chunks() -> AsyncIterator[bytes]:
        done = _watch(future)
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(done), KEEPALIVE_S)
                break
            except TimeoutError:
                yield b" "
        try:
            value = await blocking(request, body)
        except InferenceError as exc:
            value = {"error": str(exc)}
        yield json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    return StreamingResponse(chunks(), media_type="application/json")


@router.get("/ao/cu/result/{message_id}", responses=ERRORS, openapi_extra={"parameters": [PROCESS_QUERY]})
async def result(request: Request, message_id: str = documented_id_param("the message ID")) -> Any:
    """AO's result of one message, once its call has finished: {Output, Messages, Spawns, GasUsed, Error?}."""
    units = units_of(request)
    found = await blocking(request, units.lookup, message_id, request.query_params.get("process-id", ""))
    if not isinstance(found, AoCall):
        return found
    running: AoCall = found
    if running.running.settled.done():
        return await blocking(request, units.settled_body, running)
    return _answer_when_done(running.running.settled, lambda: units.settled_body(running), request)


@router.get("/ao/cu/results/{process_id}", responses=ERRORS)
async def results(request: Request, process_id: str = documented_id_param("the process ID")) -> JSONResponse:
    """A page of a process's results: {pageInfo, edges: [{cursor, node}]}; errors keep an empty `edges`."""
    query = request.query_params
    try:
        units = units_of(request)
        page = await blocking(request, units.results, process_id, query.get("from"), query.get("to"),
                              query.get("sort"), query.get("limit"))
    except InferenceError as exc:
        response = inference_error_response(exc)
        # aoconnect's results() throws a bare "edges: Required" on a body without edges.
        return JSONResponse({**json.loads(bytes(response.body)), "edges": []}, status_code=exc.status)
    except ApiError as exc:
        return JSONResponse({"error": exc.reason, "status": exc.status, "edges": []}, status_code=exc.status)
    return JSONResponse(page)


@router.post("/ao/cu/dry-run", responses=ERRORS, openapi_extra={"parameters": [PROCESS_QUERY], "requestBody": {
    "required": True, "content": {"application/json": {"schema": body_schemas.ao_dry_run()}}}})
async def dry_run(request: Request) -> Any:
    """Evaluate a JSON message without writing a record or charging anyone; the result object."""
    units = units_of(request)
    body = parse_json_object(await read_limited(request, MAX_REQUEST_BODY))
    answer = await blocking(request, units.dry_run, request.query_params.get("process-id", ""), body,
                            is_loopback(request))
    if isinstance(answer, Future):
        if answer.done():
            return answer.result()
        return _answer_when_done(answer, answer.result, request)
    return answer


@router.api_route("/ao/cu/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/ao/mu/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
async def not_offered(rest: str, request: Request) -> JSONResponse:
    """Any other unit route: a clear 404 rather than the data routes' answer (405 on a route's other methods)."""
    unit = request.url.path.removeprefix("/ao/").rstrip("/")
    for prefix, methods in UNIT_ROUTES.items():
        if (unit == prefix or unit.startswith(prefix + "/")) and request.method not in methods:
            raise ApiError(405, f"{request.method} is not allowed here", headers={"Allow": ", ".join(methods)})
    raise ApiError(404, f"not an AO unit route here: {rest!r} (the MU is POST /ao/mu; the CU has "
                        "/result/{message}, /results/{process}, /dry-run)")
