"""Inference over HTTP: OpenAI-compatible `/v1/*`, AO-style `/processes`, results, replay, herder, credits.

Thin routes: identify the caller (`inference_api.callers`), validate the whole body
(`inference_api.schemas`) before anything is reserved, signed or stored, run the step
(`inference` through the call service), shape the answer (`inference_api.openai`).
Every call is priced, queued and run in a herder worker, and recorded as Message +
Result items; failures are InferenceErrors, answered by one handler.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from gateway.errors import ApiError
from gateway.inference_api import body_schemas, callers, openai
from gateway.inference_api.schemas import (
    ChatBody,
    CompletionBody,
    CreditBody,
    MessageBody,
    OpenAICallBody,
    SamplingBody,
    SpawnBody,
    header_payment,
    openapi_body,
    openapi_errors,
    parse_body,
)
from gateway.inference_api.state import blocking, lifespan, service_of
from gateway.openapi import documented_id_param
from gateway.params import parse_address, parse_id
from inference import records
from inference.errors import InvalidRequest, ModelNotFound
from inference.herder.service import CallService, RunningCall
from inference.replay import herder_runner, replay_call

router = APIRouter(lifespan=lifespan)
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CALL_ERRORS = openapi_errors(400, 401, 402, 403, 404, 409, 413, 422, 502, 503, 504)
OPENAI_CALL_ERRORS = openapi_errors(400, 401, 402, 403, 404, 409, 413, 422, 502, 503, 504, body=body_schemas.OPENAI_ERROR)
PROCESS_ID = documented_id_param("a process ID")
ADDRESS_PARAM = documented_id_param("a wallet address (43 base64url characters)")


# ---------------------------------------------------------------------------- calls


def _payment(body: SamplingBody, request: Request) -> int | None:
    """Return the payment offered (body `payment` or header X-Payment), None for the quote."""
    return body.payment if body.payment is not None else header_payment(request.headers.get("x-payment"))


def _start_openai(service: CallService, caller: callers.CallerRequest, body: OpenAICallBody, kind: str,
                  payment: int | None) -> openai.OpenCall:
    """Plan, price and start a call from an OpenAI body."""
    processes = service.inference.processes
    template = body.chat_template if isinstance(body, ChatBody) else None
    if body.process is not None:
        process_id, record = body.process, processes.get(body.process).record
        model = record.model
        if template is not None and template != record.chat_template:
            raise InvalidRequest(f"process {process_id} renders with chat template {record.chat_template!r}, "
                                 f"not {template!r}; leave out process or chat_template")
    else:
        model = body.model or ""
        process_id = service.default_process(model, template)
    if isinstance(body, ChatBody):
        plan = processes.plan(process_id, messages=body.messages, sampling=body.sampling)
    else:
        assert isinstance(body, CompletionBody)
        plan = processes.plan(process_id, prompt=body.prompt, sampling=body.sampling)
    return openai.OpenCall(callers.start_call(service, caller, plan, payment), model, kind, int(time.time()))


async def _openai_call(request: Request, model: type[OpenAICallBody], kind: str) -> Any:
    service = service_of(request)
    caller = await callers.identify(request, service)
    body = parse_body(model, caller.body)
    call = await blocking(request, _start_openai, service, caller, body, kind, _payment(body, request))
    if body.stream:
        return StreamingResponse(openai.stream_events(call), media_type="text/event-stream", headers=STREAM_HEADERS)
    return openai.completion_body(call, await call.running.result())


@router.post("/v1/chat/completions", responses={**body_schemas.openai_answer("chat"), **OPENAI_CALL_ERRORS},
             openapi_extra=openapi_body(ChatBody, schema=body_schemas.chat()))
async def chat_completions(request: Request) -> Any:
    """OpenAI chat completion on a model by ID or name; the answer carries its record IDs."""
    return await _openai_call(request, ChatBody, "chat")


@router.post("/v1/completions", responses={**body_schemas.openai_answer("text"), **OPENAI_CALL_ERRORS},
             openapi_extra=openapi_body(CompletionBody, schema=body_schemas.completion()))
async def completions(request: Request) -> Any:
    """OpenAI text completion on a model by ID or name; the answer carries its record IDs."""
    return await _openai_call(request, CompletionBody, "text")


# ---------------------------------------------------------------------------- models


@router.get("/v1/models", responses=openapi_errors(503, body=body_schemas.OPENAI_ERROR))
async def list_models(request: Request) -> dict[str, Any]:
    """OpenAI model list: every model this node trusts, by ID, with its names."""
    service = service_of(request)
    entries = await blocking(request, service.inference.models.list)
    return {"object": "list", "data": [openai.model_object(entry) for entry in entries]}


@router.get("/v1/models/{model_id:path}", responses=openapi_errors(404, 503, body=body_schemas.OPENAI_ERROR))
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    """OpenAI model object for one model this node trusts (by ID or name)."""
    service = service_of(request)
    try:
        wanted = await blocking(request, service.inference.models.model_id, model_id)
    except ModelNotFound:
        raise ApiError(404, f"no model {model_id} here") from None
    for entry in await blocking(request, service.inference.models.list):
        if entry.id == wanted:
            return openai.model_object(entry)
    raise ApiError(404, f"no model {model_id} here")


# ---------------------------------------------------------------------------- AO-style


@router.post("/processes", status_code=201, responses=CALL_ERRORS,
             openapi_extra=openapi_body(SpawnBody, schema=body_schemas.spawn()))
async def spawn_process(request: Request) -> JSONResponse:
    """Spawn a llama process: {model, settings?, system_prompt?, chat_template?} -> 201 {process}."""
    service = service_of(request)
    caller = await callers.identify(request, service)
    body = parse_body(SpawnBody, caller.body)
    process_id = await blocking(request, service.inference.processes.spawn, body.model, body.settings,
                                body.system_prompt, body.chat_template)
    return JSONResponse({"process": process_id}, status_code=201)


def _start_message(service: CallService, caller: callers.CallerRequest, process_id: str, body: MessageBody,
                   payment: int | None) -> RunningCall:
    plan = service.inference.processes.plan(process_id, prompt=body.prompt, messages=body.messages,
                                            sampling=body.sampling)
    return callers.start_call(service, caller, plan, payment)


@router.post("/processes/{process_id}/messages", responses=CALL_ERRORS,
             openapi_extra=openapi_body(MessageBody, schema=body_schemas.message()))
async def send_message(request: Request, process_id: str = PROCESS_ID) -> dict[str, Any]:
    """Send a message to a process: {prompt | messages, sampling..., payment?} -> output and records."""
    service = service_of(request)
    caller = await callers.identify(request, service)
    body = parse_body(MessageBody, caller.body)
    parse_id(process_id, "process ID")
    running = await blocking(request, _start_message, service, caller, process_id, body, _payment(body, request))
    result = await running.result()
    return {
        "process": result.process_id,
        "message": result.message_id,
        "result": result.result_id,
        "nonce": running.nonce,
        "output": result.text,
        "finish_reason": result.finish_reason,
        "seed": result.seed,
        "usage": openai.usage_of(result),
        "fee": running.fee,
        "signed_request": caller.signed_item,
    }


def _load_result(service: CallService, message_id: str) -> dict[str, Any]:
    # This node's calls are recorded by its own wallet; a Result from anyone else is not the answer.
    found = service.inference.records.find_result_for(message_id, service.node_address)
    if found is None:
        raise ApiError(404, f"no result for message {message_id}")
    stored = service.inference.records.load(found, records.ResultRecord.type)
    return {"id": found, "owner": stored.owner_address, **records.record_json(stored.record)}


@router.get("/results/{message_id}", responses=openapi_errors(400, 404, 422, 503))
async def get_result(request: Request, message_id: str = documented_id_param("a message ID")) -> dict[str, Any]:
    """Return the Result record of a message (404 until it is written)."""
    service = service_of(request)
    return await blocking(request, _load_result, service, parse_id(message_id))


def _replay(service: CallService, record_id: str) -> dict[str, Any]:
    notes: list[str] = []
    # Records are checked here; the model runs in a herder worker, queued with the calls,
    # so replays neither load models into the server process nor take more CPUs than calls.
    report = replay_call(service.inference, record_id, on_identity=notes.extend, runner=herder_runner(service.pool))
    return {**asdict(report), "summary": report.summary(), "identity_differences": notes}


@router.post("/replay/{record_id}", responses=CALL_ERRORS)
async def replay(request: Request, record_id: str = documented_id_param("a message or result ID")) -> dict[str, Any]:
    """Replay a recorded call (message or result ID) and compare token for token."""
    service = service_of(request)
    await callers.identify(request, service)
    return await blocking(request, _replay, service, parse_id(record_id, "record ID"))


# ---------------------------------------------------------------------------- herder and credits


@router.get("/herder/info", responses=openapi_errors(503))
async def herder_info(request: Request) -> dict[str, Any]:
    """Base fee, token fee, last multiplier, queue length and workers."""
    return service_of(request).info()


@router.get("/credits/{address}", responses=openapi_errors(400, 503))
async def get_credit(request: Request, address: str = ADDRESS_PARAM) -> dict[str, Any]:
    """Return an address's credit balance."""
    service = service_of(request)
    address = parse_address(address)
    return {"address": address, "balance": await blocking(request, service.ledger.balance, address)}


@router.post("/credits/{address}", responses=openapi_errors(400, 403, 413, 503), openapi_extra=openapi_body(CreditBody, signed=False, schema=body_schemas.credit()))
async def add_credit(request: Request, address: str = ADDRESS_PARAM) -> dict[str, Any]:
    """Credit an address ({"amount": N}); admin only: callers on this machine."""
    # Security: crediting mints spendable balance, so only the node's own machine may do it.
    if not callers.is_loopback(request):
        raise ApiError(403, "crediting is only allowed from this machine")
    address = parse_address(address)
    service = service_of(request)
    body = parse_body(CreditBody, callers.parse_json_object(await callers.read_body(request)))
    notice = await blocking(request, service.credit, address, body.amount)
    return {"address": address, "balance": service.ledger.balance(address), "credit_notice": notice}
