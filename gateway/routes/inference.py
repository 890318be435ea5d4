"""Inference over HTTP: OpenAI-compatible `/v1/*`, AO-style `/processes`, replay, herder, credits.

Every call goes through the herder (priced, queued, run in a worker process) and is
recorded as Message + Result items; responses carry their IDs in `record`.

Callers are identified by `Authorization: Bearer <API key>` (bound to an address), or
by sending the request JSON as the data of an ANS-104 item signed with their own key
(`Content-Type: application/octet-stream`; the caller is the item's owner address; the item's
target must be this node's address, so it cannot be replayed against another node).
Without either, only a caller on this machine is served, and only while keys are not
required.
"""

from __future__ import annotations

import atexit
import io
import ipaddress
import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from gateway.errors import ApiError

router = APIRouter()

MAX_REQUEST_BODY = 4 * 1024 * 1024  # prompts and chat histories, never weights
OCTET_STREAM = "application/octet-stream"
MAX_CONTEXT = 131072  # for a model whose header names no context length
SSE_DONE = "data: [DONE]\n\n"
SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty",
                   "frequency_penalty", "presence_penalty", "seed", "stop")
# OpenAI fields that change what is generated but that this node cannot honour: refused,
# never silently ignored.
UNSUPPORTED_FIELDS = ("tools", "tool_choice", "functions", "function_call", "response_format",
                      "logit_bias", "suffix", "best_of", "echo")
_service_lock = threading.Lock()


# ---------------------------------------------------------------------------- service


def service_of(request: Request):
    """Given a request, return the app's HerderService, starting it on first use."""
    state = request.app.state
    service = getattr(state, "inference", None)
    if service is not None:
        return service
    with _service_lock:
        service = getattr(state, "inference", None)
        if service is None:
            service = _start_service(request)
            state.inference = service
    return service


def _start_service(request: Request):
    from inference.herder import HerderConfig, HerderService

    node = request.app.state.node
    overrides = getattr(node.config, "herder", None) or {}
    try:
        config = HerderConfig.load(node.config.data_dir, **overrides)
    except ValueError as exc:
        raise ApiError(503, f"inference is misconfigured: {exc}") from None
    service = HerderService(node.store, node.config.data_dir, config, source=node.upstream)
    # Workers are child processes: stop them with the server, however it exits.
    atexit.register(service.close)
    return service


# ---------------------------------------------------------------------------- callers


@dataclass
class CallerRequest:
    """Who is calling and the JSON body they sent."""

    address: str
    body: dict
    signed_item: str | None = None  # ID of the ANS-104 item the body came in


def _is_loopback(request: Request) -> bool:
    # Security: the socket peer, never a forwarded-for header, decides "local".
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bearer_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def _address_from_key(request: Request, service) -> str | None:
    """Return the address of the presented API key, None when no key counts; raise 401."""
    from inference.keys import KEY_PREFIX

    key = _bearer_key(request)
    if key is None:
        return None
    address = service.keys.address_for(key)
    if address is not None:
        return address
    # A local caller with keys optional may send any placeholder (the openai client insists
    # on one); a key in our own format that does not resolve is always refused.
    if key.startswith(KEY_PREFIX) or service.config.require_keys or not _is_loopback(request):
        raise ApiError(401, "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
    return None


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_REQUEST_BODY:
        raise ApiError(413, f"request body over {MAX_REQUEST_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BODY:
            raise ApiError(413, f"request body over {MAX_REQUEST_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


async def caller_request(request: Request) -> CallerRequest:
    """Given a call request, return the caller's address and body; raise 401/400/413."""
    service = await run_in_threadpool(service_of, request)
    raw = await _read_body(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == OCTET_STREAM:
        return await run_in_threadpool(_signed_request, service, raw)
    body = _parse_json(raw)
    address = _address_from_key(request, service)
    if address is not None:
        return CallerRequest(address, body)
    if not service.config.require_keys and _is_loopback(request):
        return CallerRequest(service.node_address, body)
    raise ApiError(
        401,
        "an API key is required: send Authorization: Bearer <key> (make one with `permastore keys create`)"
        " or a request signed as an ANS-104 item",
        {"WWW-Authenticate": "Bearer"},
    )


_items_in_flight: set[str] = set()  # signed requests being stored (the store knows the rest)
_items_lock = threading.Lock()


def _signed_request(service, raw: bytes) -> CallerRequest:
    """Given the bytes of a signed ANS-104 item, verify it and return its owner and JSON data.

    The item is stored, so it is both the caller's permanent authorisation and the guard
    against replaying it: an item ID is accepted once.
    """
    from permastore.protocol import ans104
    from permastore.protocol.errors import ProtocolError

    try:
        header, data = ans104.parse_item(raw)
        ans104.verify_item(raw)  # Security: the signature binds the owner to this exact body
    except ProtocolError as exc:
        raise ApiError(400, f"not a valid signed ANS-104 item: {exc}") from None
    _check_bound_to(service, header)
    body = _parse_json(data)
    with _items_lock:
        if header.id in _items_in_flight or service.store.info(header.id) is not None:
            raise ApiError(409, f"signed request {header.id} was already used")
        _items_in_flight.add(header.id)
    try:
        service.store.put_item(io.BytesIO(raw))
    finally:
        with _items_lock:
            _items_in_flight.discard(header.id)
    return CallerRequest(header.owner_address, body, signed_item=header.id)


def _check_bound_to(service, header) -> None:
    """Refuse a signed request whose ANS-104 target is not this node's wallet address.

    Security: without it, a request signed for one node could be replayed against another
    node (each remembers only its own used items) and charged to the signer there too.
    """
    from permastore.protocol import b64url

    node = service.node_address
    if header.target is None:
        raise ApiError(400, f"a signed request must name this node: set the item's target to {node}")
    target = b64url.encode(header.target)
    if target != node:
        raise ApiError(403, f"this signed request is for node {target}, not this node ({node})")


# ---------------------------------------------------------------------------- request fields


def _sampling(body: dict):
    """Given a request body, return validated SamplingParams (OpenAI names, plus llama.cpp's)."""
    from inference.engine import SamplingParams

    for name in UNSUPPORTED_FIELDS:
        if body.get(name) not in (None, False, [], {}):
            raise ApiError(400, f"{name} is not supported by this node")
    if body.get("n", 1) != 1:
        raise ApiError(400, "n must be 1: one call, one recorded result")
    if body.get("logprobs") not in (None, False):
        raise ApiError(400, "logprobs are not supported by this node")
    values = {name: body[name] for name in SAMPLING_FIELDS if body.get(name) is not None}
    stop = values.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
        isinstance(stop, list) and all(isinstance(s, str) for s in stop)
    ):
        raise ApiError(400, "stop must be a string or a list of strings")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        values["max_tokens"] = max_tokens
    return SamplingParams.from_json(values)


def _payment(body: dict, request: Request) -> int | None:
    """Return the payment offered (body `payment` or header X-Payment), None for the quote."""
    value = body.get("payment", request.headers.get("x-payment"))
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ApiError(400, "payment must be a non-negative integer")
    return value


def _model_of(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required: a model ID (GET /v1/models lists them)")
    return model


# ---------------------------------------------------------------------------- errors


def _error_status(exc: Exception) -> tuple[int, str]:
    """Given an inference or herder failure, return (HTTP status, reason)."""
    from inference.errors import InferenceError

    if isinstance(exc, InferenceError):  # HerderError included
        return exc.status, str(exc)
    from permastore.protocol.errors import ProtocolError

    if isinstance(exc, ProtocolError):
        return 400, str(exc)
    raise exc


def _error_response(exc: Exception) -> JSONResponse:
    from inference.herder import PaymentRequired

    status, reason = _error_status(exc)
    body: dict[str, Any] = {"error": reason, "status": status}
    if isinstance(exc, PaymentRequired):
        body.update(needed=exc.needed, balance=exc.balance, quote=exc.quote)
    return JSONResponse(body, status_code=status)


async def _guarded(function, *args):
    """Run a blocking inference step; turn its refusals into JSON errors."""
    from inference.errors import InferenceError
    from permastore.protocol.errors import ProtocolError

    try:
        return await run_in_threadpool(function, *args)
    except (InferenceError, ProtocolError) as exc:
        return _error_response(exc)


# ---------------------------------------------------------------------------- calls


@dataclass
class OpenCall:
    """A call started for an HTTP request, with what its response needs to say."""

    running: Any
    model: str
    kind: str  # "chat" or "text"
    created: int
    fee: int


def _start_call(service, caller: CallerRequest, request: Request, kind: str, process_id: str | None = None):
    """Plan, price and start a call from an OpenAI-style body; return an OpenCall."""
    from inference.processes import get_process, plan_call

    body = caller.body
    sampling = _sampling(body)
    if process_id is None:
        process_id = body.get("process")
        if process_id is not None and not isinstance(process_id, str):
            raise ApiError(400, "process must be a process ID string")
    if process_id is not None:
        model = get_process(service.store, process_id).record.model
    else:
        model = _model_of(body)
        process_id = service.default_process(model)
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "messages must be a non-empty list")
        plan = plan_call(service.store, process_id, messages=messages, sampling=sampling)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be a string")
        plan = plan_call(service.store, process_id, prompt=prompt, sampling=sampling)
    running = service.start(plan, caller.address, _payment(body, request))
    return OpenCall(running, model, kind, int(time.time()), running.fee)


def _record(result) -> dict:
    return {"process": result.process_id, "message": result.message_id, "result": result.result_id}


def _usage(result) -> dict:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def _finish_reason(reason: str) -> str:
    return reason if reason in ("stop", "length") else "stop"


def _completion_body(call: OpenCall, result) -> dict:
    """Given a finished call, return the OpenAI response object (chat or text)."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": _finish_reason(result.finish_reason), "logprobs": None}
    if call.kind == "chat":
        choice["message"] = {"role": "assistant", "content": result.text}
        kind, prefix = "chat.completion", "chatcmpl-"
    else:
        choice["text"] = result.text
        kind, prefix = "text_completion", "cmpl-"
    return {
        "id": prefix + result.message_id,
        "object": kind,
        "created": call.created,
        "model": call.model,
        "choices": [choice],
        "usage": _usage(result),
        "record": _record(result),
        "fee": call.fee,
        "seed": result.seed,
    }


def _chunk(call: OpenCall, text: str | None, finish: str | None = None, first: bool = False) -> dict:
    """Return one OpenAI stream chunk."""
    if call.kind == "chat":
        delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else {}
        if text and not first:
            delta["content"] = text
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        kind, prefix = "chat.completion.chunk", "chatcmpl-"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        kind, prefix = "text_completion", "cmpl-"
    return {
        "id": prefix + call.running.message_id,
        "object": kind,
        "created": call.created,
        "model": call.model,
        "choices": [choice],
    }


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _stream_events(call: OpenCall) -> Iterator[str]:
    """Yield the call as server-sent events: chunks, a last chunk with the record, [DONE]."""
    from inference.herder import HerderError

    # A client that leaves mid-stream only stops this generator; the herder still settles
    # the call (Result written, fee charged or refunded).
    if call.kind == "chat":
        yield _sse(_chunk(call, "", first=True))
    for piece in call.running.text_pieces():
        yield _sse(_chunk(call, piece))
    try:
        result = call.running.finish()
    except HerderError as exc:
        # The stream has begun (status 200 is sent): the failure travels as an error event,
        # which OpenAI clients raise as an APIError.
        status, reason = _error_status(exc)
        yield _sse({"error": {"message": reason, "type": "herder_error", "code": status},
                    "record": {"message": call.running.message_id}})
        yield SSE_DONE
        return
    last = _chunk(call, None, finish=_finish_reason(result.finish_reason))
    last.update(usage=_usage(result), record=_record(result), fee=call.fee, seed=result.seed)
    yield _sse(last)
    yield SSE_DONE


async def _completion(request: Request, kind: str):
    caller = await caller_request(request)
    service = service_of(request)
    started = await _guarded(_start_call, service, caller, request, kind)
    if isinstance(started, JSONResponse):
        return started
    stream = caller.body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise ApiError(400, "stream must be true or false")
    if stream:
        return StreamingResponse(
            _stream_events(started),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    result = await _guarded(started.running.finish)
    if isinstance(result, JSONResponse):
        return result
    return _completion_body(started, result)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    """OpenAI chat completion on a model by ID; the answer carries its record IDs."""
    return await _completion(request, "chat")


@router.post("/v1/completions")
async def completions(request: Request):
    """OpenAI text completion on a model by ID; the answer carries its record IDs."""
    return await _completion(request, "text")


def _model_object(entry) -> dict:
    return {
        "id": entry.id,
        "object": "model",
        "created": 0,
        "owned_by": entry.tags.get("Model-Name", "permastore"),
        "size": entry.size,
        "tags": entry.tags,
    }


@router.get("/v1/models")
async def list_models(request: Request):
    """OpenAI model list: every stored model, by ID."""
    from inference.models import list_models as stored_models

    store = request.app.state.node.store
    entries = await run_in_threadpool(stored_models, store)
    return {"object": "list", "data": [_model_object(entry) for entry in entries]}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, request: Request):
    """OpenAI model object for one stored model."""
    from inference.models import list_models as stored_models

    store = request.app.state.node.store
    for entry in await run_in_threadpool(stored_models, store):
        if entry.id == model_id:
            return _model_object(entry)
    raise ApiError(404, f"no model {model_id} here")


# ---------------------------------------------------------------------------- AO-style


@router.post("/processes")
async def spawn_process(request: Request):
    """Spawn a llama process: {model, settings?, system_prompt?, chat_template?} -> {process}."""
    caller = await caller_request(request)
    service = service_of(request)
    body = caller.body

    def spawn_it():
        from inference.engine import EngineSettings
        from inference.processes import spawn

        settings = body.get("settings")
        if settings is not None and not isinstance(settings, dict):
            raise ApiError(400, "settings must be an object")
        model = _model_of(body)
        if settings is not None:
            settings = EngineSettings.from_json(settings)
            _check_resources(service, model, settings)
        return spawn(
            service.store,
            model,
            settings=settings,
            system_prompt=body.get("system_prompt"),
            chat_template=body.get("chat_template"),
            source=service.source,
        )

    process_id = await _guarded(spawn_it)
    if isinstance(process_id, JSONResponse):
        return process_id
    return JSONResponse({"process": process_id}, status_code=201)


def _check_resources(service, model: str, settings) -> None:
    """Refuse settings that would exhaust this machine (a worker would die on every call)."""
    import os

    from inference.processes import model_metadata

    if settings.n_threads > (os.cpu_count() or 1):
        raise ApiError(400, f"n_threads must be at most {os.cpu_count()} (this machine's CPUs)")
    _, metadata = model_metadata(service.store, model, service.source)
    limit = metadata.context_length or MAX_CONTEXT
    if settings.n_ctx > limit:
        raise ApiError(400, f"n_ctx must be at most {limit} (the model's context length)")


@router.post("/processes/{process_id}/messages")
async def send_message(process_id: str, request: Request):
    """Send a message to a process: {prompt | messages, sampling..., payment?} -> output and records."""
    caller = await caller_request(request)
    service = service_of(request)
    if ("messages" in caller.body) == ("prompt" in caller.body):
        raise ApiError(400, "give exactly one of prompt or messages")
    kind = "chat" if "messages" in caller.body else "text"
    started = await _guarded(_start_call, service, caller, request, kind, process_id)
    if isinstance(started, JSONResponse):
        return started
    result = await _guarded(started.running.finish)
    if isinstance(result, JSONResponse):
        return result
    return {
        "process": result.process_id,
        "message": result.message_id,
        "result": result.result_id,
        "nonce": started.running.prepared.nonce,
        "output": result.text,
        "finish_reason": result.finish_reason,
        "seed": result.seed,
        "usage": _usage(result),
        "fee": started.fee,
        "signed_request": caller.signed_item,
    }


@router.get("/results/{message_id}")
async def get_result(message_id: str, request: Request):
    """Return the Result record of a message (404 until it is written)."""
    from inference import records

    store = request.app.state.node.store

    def load():
        from permastore.protocol.b64url import is_id

        if not is_id(message_id):
            raise ApiError(400, f"{message_id!r} is not a valid ID")
        from permastore.protocol.wallet import address_of

        # This node's calls are recorded by its own wallet; a Result from anyone else is not the answer.
        result_id = records.find_result_for(store, message_id, address_of(store.signer.owner))
        if result_id is None:
            raise ApiError(404, f"no result for message {message_id}")
        stored = records.load_record(store, result_id, records.ResultRecord.type)
        return {"id": result_id, "owner": stored.owner_address, **records.record_json(stored.record)}

    return await _guarded(load)


@router.post("/replay/{record_id}")
async def replay(record_id: str, request: Request):
    """Replay a recorded call (message or result ID) and compare token for token."""
    await caller_request(request)
    service = service_of(request)

    def run():
        from inference.replay import herder_runner, replay_call

        notes: list[str] = []
        # Records are checked here; the model runs in a herder worker, queued with the calls,
        # so replays neither load models into the server process nor take more CPUs than calls.
        report = replay_call(service.store, record_id, on_identity=notes.extend,
                             runner=herder_runner(service.herder))
        return {**asdict(report), "summary": report.summary(), "identity_differences": notes}

    return await _guarded(run)


# ---------------------------------------------------------------------------- herder and credits


@router.get("/herder/info")
async def herder_info(request: Request):
    """Base fee, token fee, last multiplier, queue length and workers."""
    service = await run_in_threadpool(service_of, request)
    return service.info()


@router.get("/credits/{address}")
async def get_credit(address: str, request: Request):
    """Return an address's credit balance."""
    service = await run_in_threadpool(service_of, request)
    return {"address": address, "balance": service.ledger.balance(address)}


@router.post("/credits/{address}")
async def add_credit(address: str, request: Request):
    """Credit an address ({"amount": N}); admin only: callers on this machine."""
    from inference.credits import CreditError
    from inference.keys import is_address

    # Security: crediting mints spendable balance, so only the node's own machine may do it.
    if not _is_loopback(request):
        raise ApiError(403, "crediting is only allowed from this machine")
    if not is_address(address):
        raise ApiError(400, f"not a wallet address: {address!r}")
    service = await run_in_threadpool(service_of, request)
    body = _parse_json(await _read_body(request))
    amount = body.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ApiError(400, "amount must be a positive integer")
    try:
        notice = await run_in_threadpool(service.credit, address, amount)
    except CreditError as exc:
        raise ApiError(400, str(exc)) from None
    return {"address": address, "balance": service.ledger.balance(address), "credit_notice": notice}
