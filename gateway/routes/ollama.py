"""The Ollama API on the node's own server: `/api/tags`, `/api/show`, `/api/generate`, `/api/chat`, ...

Thin routes: identify the caller (as OpenAI calls: API key, signed item, or this machine),
validate the whole body (`inference_api.ollama_bodies`) before anything is reserved,
signed or stored, run the step on the inference threads (`inference_api.ollama_calls`,
`ollama_pull`), shape the answer (`inference_api.ollama_wire`). Calls are the node's calls:
priced, queued in the herder, recorded as Message and Result, replayable.

Every failure here is Ollama's `{"error": "<reason>"}` with its status (OllamaRoute), which
the `ollama` clients raise as ResponseError. Registered before the data routes, whose
`/{id}/{path}` would otherwise take `/api/...`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute

from gateway.errors import ApiError
from gateway.inference_api import body_schemas, callers
from gateway.inference_api import ollama_calls as calls
from gateway.inference_api import ollama_wire as wire
from gateway.inference_api.ollama_bodies import (
    CopyBody,
    EmbedBody,
    GenerateBody,
    OllamaBody,
    OllamaChatBody,
    PullBody,
    ShowBody,
)
from gateway.inference_api.ollama_pull import plan_pull, pull_steps
from gateway.inference_api.schemas import header_payment, openapi_body, parse_body
from gateway.inference_api.state import blocking, service_of
from gateway.node import node_of
from gateway.openapi import Responses
from inference.errors import InferenceError, PaymentRequired
from inference.model_names import InvalidModelName
from inference.model_pull import ModelPuller
from permastore.protocol.errors import ProtocolError

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
OLLAMA_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}}}
STREAMED: Responses = {200: {"description": "NDJSON (one JSON object a line), or one object with stream: false",
                  "content": {"application/x-ndjson": {}, "application/json": {}}}}
PERMANENT = "models on this node are permanent: nothing is deleted (re-point a name with `permastore model name`)"


def refusals(*statuses: int, streamed: bool = False) -> dict[int | str, dict[str, Any]]:
    """Given the statuses a route answers besides 200, return their OpenAPI responses (Ollama's error body)."""
    out: dict[int | str, dict[str, Any]] = dict(STREAMED) if streamed else {}
    out.update({status: {"description": "refused, with a reason", **OLLAMA_ERROR} for status in statuses})
    return out


def ollama_error(status: int, reason: str, extra: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    """Return Ollama's error body: `{"error": reason}` (and this node's details, if any)."""
    return JSONResponse({"error": reason, **(extra or {})}, status_code=status, headers=headers)


class OllamaRoute(APIRoute):
    """A route whose refusals are answered in Ollama's shape, not the gateway's `{"error", "status"}`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return ollama_error(exc.status, exc.reason, headers=exc.headers)
            except PaymentRequired as exc:
                return ollama_error(exc.status, str(exc), exc.details())
            except InferenceError as exc:
                return ollama_error(exc.status, str(exc))
            except ProtocolError as exc:
                return ollama_error(400, str(exc))
        return route


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Per app: the processes spawned for Ollama `options` and the models in use."""
    app.state.ollama = calls.OllamaState()
    yield


router = APIRouter(route_class=OllamaRoute, lifespan=lifespan, tags=["ollama"])
CALL_REFUSALS = refusals(400, 401, 402, 403, 404, 409, 413, 422, 502, 503, 504, streamed=True)


async def _json_body(request: Request) -> dict[str, Any]:
    return callers.parse_json_object(await callers.read_body(request))


def _payment(request: Request) -> int | None:
    return header_payment(request.headers.get("x-payment"))


# ---------------------------------------------------------------------------- models


@router.head("/api/version", include_in_schema=False)
@router.get("/api/version", summary="The Ollama API version this node follows; HEAD too")
async def version() -> dict[str, str]:
    """The Ollama API version this node follows."""
    return {"version": wire.API_VERSION}


def _tags(service: Any) -> dict[str, Any]:
    models = service.inference.models
    named_at = {b.name: b.created / 1000 for b in models.names.bindings()}
    return wire.tags_body(models.list(), named_at)


@router.head("/api/tags", include_in_schema=False)
@router.get("/api/tags", responses=refusals(503), summary="Every trusted model by name and ID; HEAD too")
async def tags(request: Request) -> dict[str, Any]:
    """Every trusted model, under each of its names and as `ID:latest`."""
    service = service_of(request)
    return await blocking(request, _tags, service)


@router.post("/api/show", responses=refusals(400, 403, 404, 413, 422, 503),
             openapi_extra=openapi_body(ShowBody, signed=False, schema=body_schemas.ollama("show")))
async def show(request: Request) -> dict[str, Any]:
    """A model's details, GGUF header (`model_info`), chat template and capabilities."""
    service = service_of(request)
    body = parse_body(ShowBody, await _json_body(request))
    return wire.show_body(await blocking(request, calls.show_facts, service, body.model))


@router.get("/api/ps", responses=refusals(503))
async def ps(request: Request) -> dict[str, Any]:
    """The models the last calls ran on (the workers keep them loaded)."""
    service = service_of(request)
    return await blocking(request, calls.ps_body, service, request.app.state.ollama)


# ---------------------------------------------------------------------------- calls


async def _call(request: Request, model: type[GenerateBody] | type[OllamaChatBody], kind: str) -> Response:
    started_ns = time.monotonic_ns()
    service = service_of(request)
    caller = await callers.identify(request, service)
    body = parse_body(model, caller.body)
    state = request.app.state.ollama
    empty = not body.prompt if isinstance(body, GenerateBody) else not body.messages
    if empty:  # Ollama's "load the model" request: nothing is run or recorded
        await blocking(request, calls.load, service, state, body)
        return JSONResponse(wire.loaded_body(kind, body.model))
    start = calls.start_generate if isinstance(body, GenerateBody) else calls.start_chat
    call = await blocking(request, start, service, state, caller, body, _payment(request), started_ns)
    if body.stream:
        return StreamingResponse(wire.ndjson_stream(call), media_type=wire.NDJSON, headers=STREAM_HEADERS)
    result = await call.running.result()
    return JSONResponse(wire.final_body(call, result, result.text))


@router.post("/api/generate", responses=CALL_REFUSALS, openapi_extra=openapi_body(GenerateBody, schema=body_schemas.ollama("generate")))
async def generate(request: Request) -> Response:
    """A completion (chat-templated as one user turn, or raw); NDJSON unless `stream: false`."""
    return await _call(request, GenerateBody, "generate")


@router.post("/api/chat", responses=CALL_REFUSALS, openapi_extra=openapi_body(OllamaChatBody, schema=body_schemas.ollama("chat")))
async def chat(request: Request) -> Response:
    """A chat completion through the model's chat template; NDJSON unless `stream: false`."""
    return await _call(request, OllamaChatBody, "chat")


async def _embed(request: Request) -> tuple[EmbedBody, list[list[float]], int, int]:
    """Return the body, the vectors, the tokens read and when the request came (monotonic ns)."""
    started_ns = time.monotonic_ns()
    service = service_of(request)
    caller = await callers.identify(request, service)
    body = parse_body(EmbedBody, caller.body)
    future = await blocking(request, calls.start_embed, service, caller, body, _payment(request))
    if future is None:
        return body, [], 0, started_ns
    embedding = await asyncio.wrap_future(future)
    return body, wire.shortened(embedding.vectors, body.dimensions), embedding.prompt_tokens, started_ns


@router.post("/api/embed", responses=refusals(400, 401, 402, 403, 404, 413, 422, 503, 504),
             openapi_extra=openapi_body(EmbedBody, schema=body_schemas.ollama("embed")))
async def embed(request: Request) -> dict[str, Any]:
    """Embeddings (L2-normalised), for models whose GGUF declares a pooling type; a 400 for the others."""
    body, vectors, tokens, started_ns = await _embed(request)
    return wire.embed_body(body.model, vectors, tokens, started_ns)


@router.post("/api/embeddings", responses=refusals(400, 401, 402, 403, 404, 413, 422, 503, 504),
             openapi_extra=openapi_body(EmbedBody, schema=body_schemas.ollama("embed")))
async def embeddings(request: Request) -> dict[str, Any]:
    """Ollama's deprecated single-prompt embedding: `{"embedding": [...]}`."""
    _, vectors, *_ = await _embed(request)
    return {"embedding": vectors[0] if vectors else []}


# ---------------------------------------------------------------------------- pull and the rest


async def _iterate(request: Request, steps: Iterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """Run a blocking step generator on the inference threads, one step per hop."""
    done = object()
    while True:
        status = await blocking(request, next, steps, done)
        if status is done:
            return
        yield status


async def _pull_lines(request: Request, steps: Iterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for status in _iterate(request, steps):
            yield wire.line(status)
    except InferenceError as exc:  # the stream has begun: the failure is its last line
        yield wire.line({"error": str(exc)})


@router.post("/api/pull", responses=refusals(400, 403, 404, 409, 413, 422, 502, 503, streamed=True),
             openapi_extra=openapi_body(PullBody, signed=False, schema=body_schemas.ollama("pull")))
async def pull(request: Request) -> Response:
    """Get a model onto this node (held already, or from its peers, every chunk proven); Ollama's status stream."""
    service = service_of(request)
    body = parse_body(PullBody, await _json_body(request))
    puller = ModelPuller(service.inference, node_of(request).fetcher)
    plan = await blocking(request, plan_pull, service, puller, body.model, callers.is_loopback(request))
    steps = pull_steps(service, puller, plan)
    if body.stream:
        return StreamingResponse(_pull_lines(request, steps), media_type=wire.NDJSON, headers=STREAM_HEADERS)
    last: dict[str, Any] = {}
    async for status in _iterate(request, steps):
        last = status
    return JSONResponse(last)


@router.delete("/api/delete", responses=refusals(400, 403, 404, 413, 503),
               openapi_extra=openapi_body(OllamaBody, signed=False, schema=body_schemas.ollama("delete")))
async def delete(request: Request) -> Response:
    """Refused: this store is permanent (404 first for a model that is not here)."""
    service = service_of(request)
    body = parse_body(OllamaBody, await _json_body(request))
    await blocking(request, calls.entry_of, service, body.model)
    raise ApiError(403, PERMANENT)


def _copy(service: Any, body: CopyBody) -> None:
    try:
        model_id = service.inference.models.model_id(body.source)
    except InferenceError:
        raise ApiError(404, f'model "{body.source}" not found') from None
    try:
        service.inference.models.name(model_id, body.destination)
    except InvalidModelName:
        raise ApiError(400, f'destination "{body.destination}" is invalid') from None


@router.post("/api/copy", responses=refusals(400, 403, 404, 413, 503),
             openapi_extra=openapi_body(CopyBody, signed=False, schema=body_schemas.ollama("copy")))
async def copy(request: Request) -> Response:
    """Record `destination` as a name of the `source` model (a name record signed by the node wallet)."""
    # Security: the name record is signed by the node wallet, so only this machine may ask for one.
    if not callers.is_loopback(request):
        raise ApiError(403, "naming models is only allowed from this machine")
    service = service_of(request)
    body = parse_body(CopyBody, await _json_body(request))
    await blocking(request, _copy, service, body)
    return Response(status_code=200)


@router.post("/api/create", responses=refusals(501))
async def create() -> Response:
    """Refused: models are added by file, with a name."""
    raise ApiError(501, "create is not supported: store a GGUF with `permastore model add FILE --name NAME`")


@router.post("/api/push", responses=refusals(501))
async def push() -> Response:
    """Refused: there is no registry; peers pull models by ID or name."""
    raise ApiError(501, "push is not supported: models are stored permanently and other nodes pull them by ID")


@router.head("/api/blobs/{digest}", include_in_schema=False)
@router.post("/api/blobs/{digest}", responses=refusals(501))
async def blobs(digest: str) -> Response:
    """Refused: blobs belong to create, which this node does not support."""
    raise ApiError(501, "blobs are not supported: store a GGUF with `permastore model add FILE --name NAME`")
