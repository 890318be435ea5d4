"""Ollama requests as this node's calls: which process, which prompt, which sampler; plus /api/ps's view.

Blocking steps (run on the inference threads): resolve the model reference (ID, `ID:latest`
or a name; Ollama's `model 'x' not found` when none), pick the process (the model's
default process, shared with the OpenAI routes, or one spawned for the engine settings
that `options` ask for), render the call (chat template, or raw text), and start it
through the call service exactly as an OpenAI call: priced, recorded as Message and
Result, replayable.

    state = OllamaState()                       # one per app: processes by settings, models in use
    call = start_generate(service, state, caller, body, payment)   # None: nothing to run (load)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from gateway.errors import ApiError
from gateway.inference_api import callers
from gateway.inference_api import ollama_wire as wire
from gateway.inference_api.ollama_bodies import (
    CallBody,
    EmbedBody,
    GenerateBody,
    OllamaChatBody,
    OllamaOptions,
)
from gateway.inference_api.ollama_wire import OllamaCall
from inference.embeddings import (
    Embedding,
    EmbeddingUnsupported,
    plan_embedding,
    pooling_type,
    start_embedding,
)
from inference.engine import ENGINE_CACHE_SIZE
from inference.errors import InvalidRequest, ModelNotFound
from inference.herder.service import CallService
from inference.processes import Process, default_settings, raw_prompt
from inference.sampling import EngineSettings, SamplingParams

SPAWNED_PROCESSES = 64  # processes spawned for non-default settings, kept per server run (LRU)
KEEP_ALIVE_S = 24 * 3600  # what /api/ps reports: workers keep models until others displace them


@dataclass(frozen=True)
class ModelInUse:
    """A model an Ollama call used, as /api/ps lists it."""

    model_id: str
    name: str
    n_ctx: int
    used_at: float


class OllamaState:
    """Per app: the processes spawned for `options`, and the models the last calls used."""

    def __init__(self) -> None:
        self._processes: OrderedDict[tuple, str] = OrderedDict()
        self._in_use: OrderedDict[str, ModelInUse] = OrderedDict()
        self._lock = threading.Lock()

    def spawned(self, key: tuple) -> str | None:
        with self._lock:
            process_id = self._processes.get(key)
            if process_id is not None:
                self._processes.move_to_end(key)
            return process_id

    def remember(self, key: tuple, process_id: str) -> None:
        with self._lock:
            self._processes[key] = process_id
            while len(self._processes) > SPAWNED_PROCESSES:
                self._processes.popitem(last=False)

    def used(self, model_id: str, name: str, n_ctx: int) -> None:
        """Note that a call ran on this model (workers keep the last ENGINE_CACHE_SIZE loaded)."""
        with self._lock:
            self._in_use.pop(model_id, None)
            self._in_use[model_id] = ModelInUse(model_id, name, n_ctx, time.time())
            while len(self._in_use) > ENGINE_CACHE_SIZE:
                self._in_use.popitem(last=False)

    def in_use(self) -> list[ModelInUse]:
        """Return the models in use, most recent first."""
        with self._lock:
            return list(reversed(self._in_use.values()))


def not_found(ref: str) -> ApiError:
    return ApiError(404, f"model '{ref}' not found")


def resolve(service: CallService, ref: str) -> str:
    """Given a model reference, return the model ID; 404 in Ollama's words when nothing answers to it."""
    try:
        return service.inference.models.model_id(ref)
    except ModelNotFound:
        raise not_found(ref) from None


def _engine_settings(base: EngineSettings, overrides: dict[str, int]) -> EngineSettings:
    """Given a model's default settings and `options`' load-time values, return the process's settings."""
    n_threads = overrides.get("n_threads", base.n_threads)
    if n_threads <= 0:
        n_threads = base.n_threads  # Ollama's 0: the runtime's default
    n_ctx = overrides.get("n_ctx", base.n_ctx)
    penalty_last_n = overrides.get("penalty_last_n", base.penalty_last_n)
    if penalty_last_n == -1:
        penalty_last_n = n_ctx  # Ollama's -1: the whole context
    n_batch = overrides.get("n_batch", base.n_batch)
    n_ubatch = min(base.n_ubatch, n_batch) if "n_batch" in overrides else base.n_ubatch
    return replace(base, n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_ubatch, n_threads=n_threads,
                   penalty_last_n=penalty_last_n).validate()


def process_for(service: CallService, state: OllamaState, model_id: str, ref: str,
                options: OllamaOptions) -> Process:
    """Given a model and the mapped options, return its process: the default one, or one for these settings."""
    processes = service.inference.processes
    try:
        located = service.inference.models.get(model_id)
    except ModelNotFound:
        raise not_found(ref) from None
    base = default_settings(located.metadata)
    settings = _engine_settings(base, options.engine)
    if settings == base:
        return processes.get(service.default_process(model_id))
    key = (model_id, tuple(sorted(settings.to_json().items())))
    process_id = state.spawned(key)
    if process_id is None:
        process_id = processes.spawn(model_id, settings)
        service.warm(processes.get(process_id))
        state.remember(key, process_id)
    return processes.get(process_id)


def sampling_for(process: Process, options: OllamaOptions) -> SamplingParams:
    """Given the process and the mapped options, return the effective sampling (recorded as such)."""
    values = dict(options.sampling)
    if options.until_context_full:
        values["max_tokens"] = process.settings.n_ctx  # the engine stops at the context's end
    return SamplingParams.from_json(values)


def _prepared(service: CallService, state: OllamaState, body: CallBody) -> tuple[str, Process, SamplingParams]:
    model_id = resolve(service, body.model)
    process = process_for(service, state, model_id, body.model, body.mapped_options)
    return model_id, process, sampling_for(process, body.mapped_options)


def load(service: CallService, state: OllamaState, body: CallBody) -> None:
    """A call with nothing to run: resolve and load the model (its process's workers warm it)."""
    _prepared(service, state, body)


def start_generate(service: CallService, state: OllamaState, caller: callers.CallerRequest, body: GenerateBody,
                   payment: int | None, started_ns: int) -> OllamaCall:
    """Plan and start /api/generate: chat-templated as a user turn (with `system`), or raw text."""
    model_id, process, sampling = _prepared(service, state, body)
    processes = service.inference.processes
    if body.raw or process.template is None:
        # No template to apply: the model reads the prompt as it is (after `system`, as raw calls do).
        prompt = body.prompt if body.raw else raw_prompt(body.system, body.prompt)
        plan = processes.plan_for(process, prompt=prompt, sampling=sampling)
    else:
        messages = ([{"role": "system", "content": body.system}] if body.system else [])
        plan = processes.plan_for(process, messages=[*messages, {"role": "user", "content": body.prompt}],
                                  sampling=sampling)
    running = callers.start_call(service, caller, plan, payment)
    state.used(model_id, body.model, process.settings.n_ctx)
    return OllamaCall(running, body.model, "generate", started_ns)


def start_chat(service: CallService, state: OllamaState, caller: callers.CallerRequest, body: OllamaChatBody,
               payment: int | None, started_ns: int) -> OllamaCall:
    """Plan and start /api/chat through the process's chat template."""
    model_id, process, sampling = _prepared(service, state, body)
    if process.template is None:
        raise ApiError(400, f'"{body.model}" does not support chat: the model has no chat template '
                            "(use /api/generate with raw: true)")
    try:
        plan = service.inference.processes.plan_for(process, messages=body.messages, sampling=sampling)
    except InvalidRequest as exc:
        raise ApiError(400, str(exc)) from None
    running = callers.start_call(service, caller, plan, payment)
    state.used(model_id, body.model, process.settings.n_ctx)
    return OllamaCall(running, body.model, "chat", started_ns)


def entry_of(service: CallService, ref: str) -> Any:
    """Given a model reference, return its catalog entry (trusted models only); 404 otherwise."""
    model_id = resolve(service, ref)
    for entry in service.inference.models.list():
        if entry.id == model_id:
            return entry
    service.inference.models.get(model_id)  # raises the reason: not stored, not trusted, not a model
    raise not_found(ref)


def show_facts(service: CallService, ref: str) -> wire.ShowFacts:
    """Given a model reference, gather /api/show: header (verified file), default process settings, stops."""
    entry = entry_of(service, ref)
    models = service.inference.models
    fields = models.header_fields(entry.id)
    draft = service.inference.processes.draft(entry.id)  # the default process's settings, nothing written
    capabilities = ["completion"] + (["embedding"] if pooling_type(fields) else [])
    return wire.ShowFacts(entry, models.get(entry.id).metadata, fields, capabilities, draft.settings.n_ctx,
                          draft.settings.penalty_last_n, draft.template.stop if draft.template else [])


def ps_body(service: CallService, state: OllamaState) -> dict[str, Any]:
    """Return /api/ps: the models the last calls used, then those the workers preloaded at start."""
    entries = service.inference.models.list()
    by_id = {entry.id: entry for entry in entries}
    shown = [(use.model_id, use.name, use.n_ctx, use.used_at) for use in state.in_use() if use.model_id in by_id]
    for entry in entries[: service.preloaded]:
        if entry.id not in {model_id for model_id, *_ in shown}:
            name = entry.names[0] if entry.names else f"{entry.id}:latest"
            shown.append((entry.id, name, default_settings(service.inference.models.get(entry.id).metadata).n_ctx,
                          time.time()))
    return {"models": [wire.ps_entry(by_id[model_id], name, n_ctx, used_at + KEEP_ALIVE_S)
                       for model_id, name, n_ctx, used_at in shown]}


def start_embed(service: CallService, caller: callers.CallerRequest, body: EmbedBody,
                payment: int | None) -> Future[Embedding] | None:
    """Plan and start /api/embed; None when there is nothing to embed (the model is still checked)."""
    model_id = resolve(service, body.model)
    try:
        plan = plan_embedding(service.inference, model_id, body.texts(), body.truncate)
    except EmbeddingUnsupported:
        raise ApiError(400, f'"{body.model}" does not support embedding') from None
    if not plan.texts:
        return None
    callers.use(service, caller)
    try:
        return start_embedding(service, plan, caller.address, payment)
    except BaseException:
        callers.release(service, caller)
        raise
