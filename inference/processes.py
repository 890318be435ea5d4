"""Llama processes: spawn one on a model, send it calls, each call recorded as Message + Result.

A call is split so the herder can run the model in a worker process:

    plan = plan_call(store, pid, prompt=... | messages=..., sampling=...)   # render, count tokens
    call, message = start_message(store, plan, caller, fee)  # nonce, hash chain, signed Message (stored on a thread)
    generation = execute(call)                          # pure: llama.cpp only (or execute_job in a worker)
    result = write_result(store, call, generation, message)  # signed Result, stored after the Message -> CallResult

`send` does all four. A call that fails after its Message was written gets
`write_failure` (a Result with finish_reason "error"), so no message is left unanswered.

Nonces and chain values are assigned in this OS process under a lock; one writer (the
server's herder, or one CLI command) per process at a time is assumed.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from permastore.protocol import b64url

from inference import records
from inference.chat import ChatTemplate, render, resolve_template, validate_messages
from inference.engine import (
    Engine,
    EngineSettings,
    Generation,
    SamplingParams,
    engine_identity,
    token_hash,
    tokenize_prompt,
    vocabulary,
)
from inference.errors import InvalidRequest, PromptTooLong, RecordInvalid
from inference.models import ModelMetadata, read_gguf_metadata, resolve_model

DEFAULT_N_CTX = 2048
ENGINE_CACHE_SIZE = 2  # models kept loaded per OS process (each maps its weights once)
ERROR_FINISH = "error"
MAX_CALLER_BYTES = 256  # it is a tag value too (ANS-104 allows 3072)


@dataclass(frozen=True)
class Process:
    """A process record with what calls need to render prompts: the model file and template."""

    id: str
    owner_address: str
    record: records.ProcessRecord
    model_path: Path
    template: ChatTemplate | None

    @property
    def settings(self) -> EngineSettings:
        return EngineSettings.from_json(self.record.settings)


@dataclass(frozen=True)
class CallPlan:
    """A call rendered and counted, nothing written yet (the herder prices it from here)."""

    process_id: str
    input: dict
    rendered_prompt: str
    parse_special: bool
    sampling: SamplingParams
    prompt_tokens: int

    @property
    def max_tokens(self) -> int:
        return self.sampling.max_tokens


@dataclass(frozen=True)
class PreparedCall:
    """Everything a worker needs to run one recorded call; plain data, picklable, JSON-able."""

    process_id: str
    message_id: str
    nonce: int
    model_id: str
    model_path: str
    settings: dict
    prompt: str
    parse_special: bool
    sampling: dict  # seed always set

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "PreparedCall":
        return cls(**data)


@dataclass(frozen=True)
class CallResult:
    """What `send` / `write_result` return: the output and the IDs of its three records."""

    process_id: str
    message_id: str
    result_id: str
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: str
    seed: int
    timings: dict = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


# ---------------------------------------------------------------------------- processes

_metadata_cache: dict[str, ModelMetadata] = {}
_process_cache: dict[str, Process] = {}
_cache_lock = threading.Lock()


def model_metadata(store, model_id: str, source=None) -> tuple[Path, ModelMetadata]:
    """Given a model ID, return its verified file path and GGUF metadata (cached)."""
    path = resolve_model(store, model_id, source=source)
    with _cache_lock:
        metadata = _metadata_cache.get(model_id)
    if metadata is None:
        metadata = read_gguf_metadata(path)
        with _cache_lock:
            _metadata_cache[model_id] = metadata
    return path, metadata


def draft_process(
    store,
    model_id: str,
    settings: EngineSettings | None = None,
    system_prompt: str | None = None,
    chat_template: str | None = None,
    source=None,
) -> Process:
    """Given a model ID and settings, return the process that spawning would record, unwritten (id "").

    chat_template: None uses the model's own template when it has one; "model",
    "chatml", "llama-2" or "phi-3" pick one explicitly.
    """
    from permastore.protocol.wallet import address_of

    path, metadata = model_metadata(store, model_id, source)
    if settings is None:
        settings = EngineSettings(n_ctx=min(DEFAULT_N_CTX, metadata.context_length or DEFAULT_N_CTX))
    if not isinstance(settings, EngineSettings):
        raise InvalidRequest("settings must be EngineSettings")
    settings.validate()
    _check_machine(settings, metadata)
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InvalidRequest("system_prompt must be a string")
    template = resolve_template(chat_template, metadata.chat_template, metadata.bos_token, metadata.eos_token)
    record = records.ProcessRecord(
        model=model_id,
        engine=engine_identity(),
        settings=settings.to_json(),
        chat_template=template.name if template else None,
        chat_template_sha256=template.source_sha256 if template else None,
        system_prompt=system_prompt,
    )
    return Process("", address_of(store.signer.owner), record, path, template)


def _check_machine(settings: EngineSettings, metadata: ModelMetadata) -> None:
    """Refuse settings this machine or model cannot honour (every call of the process would fail)."""
    cpus = os.cpu_count() or 1
    if settings.n_threads > cpus:
        raise InvalidRequest(f"n_threads must be at most {cpus} (this machine's CPUs), got {settings.n_threads}")
    if metadata.context_length and settings.n_ctx > metadata.context_length:
        raise InvalidRequest(f"n_ctx must be at most {metadata.context_length} (the model's context length), "
                             f"got {settings.n_ctx}")


def write_process(store, draft: Process) -> str:
    """Given a drafted process, write its Process record and return the process ID."""
    process_id = records.write_record(store, draft.record)
    with _cache_lock:
        _process_cache[process_id] = Process(process_id, draft.owner_address, draft.record, draft.model_path, draft.template)
    return process_id


def spawn(
    store,
    model_id: str,
    settings: EngineSettings | None = None,
    system_prompt: str | None = None,
    chat_template: str | None = None,
    source=None,
) -> str:
    """Given a model ID and settings, write a Process record and return the process ID (see draft_process)."""
    return write_process(store, draft_process(store, model_id, settings, system_prompt, chat_template, source))


def get_process(store, process_id: str, source=None) -> Process:
    """Given a process ID, return the process (record, model file, template); cached, records never change."""
    with _cache_lock:
        cached = _process_cache.get(process_id)
    if cached is not None:
        return cached
    stored = records.load_record(store, process_id, records.ProcessRecord.type, source)
    record = stored.record
    path, metadata = model_metadata(store, record.model, source)
    template = None
    if record.chat_template:
        template = resolve_template(record.chat_template, metadata.chat_template, metadata.bos_token, metadata.eos_token)
        if template.source_sha256 != record.chat_template_sha256:
            raise RecordInvalid(f"process {process_id}: chat template {record.chat_template!r} differs from the recorded one")
    process = Process(process_id, stored.owner_address, record, path, template)
    with _cache_lock:
        _process_cache[process_id] = process
    return process


# ---------------------------------------------------------------------------- planning


def plan_call(store, process_id: str, prompt: str | None = None, messages=None, sampling: SamplingParams | None = None) -> CallPlan:
    """Given a process ID and a prompt (raw completion) or chat messages, return the rendered, counted call."""
    return plan_for(get_process(store, process_id), prompt=prompt, messages=messages, sampling=sampling)


def raw_prompt(system: str | None, prompt: str) -> str:
    """Return the text a raw prompt is tokenized as: the process's system prompt (if any), a newline, the prompt."""
    return f"{system}\n{prompt}" if system else prompt


def with_system(system: str | None, messages) -> list:
    """Return chat messages preceded by the process's system prompt (if any) as a system message."""
    return ([{"role": "system", "content": system}] if system else []) + list(messages)


def plan_for(process: Process, prompt: str | None = None, messages=None, sampling: SamplingParams | None = None) -> CallPlan:
    """Given a process (maybe a draft) and a prompt or chat messages, return the rendered, counted call.

    Raw prompts are used verbatim after the process's system prompt (if any) and a newline;
    chat messages follow the process's system prompt as a system message and go through its template.
    """
    if sampling is not None and not isinstance(sampling, SamplingParams):
        raise InvalidRequest("sampling must be SamplingParams (SamplingParams.from_json for request bodies)")
    sampling = (sampling or SamplingParams()).validate()
    if (prompt is None) == (messages is None):
        raise InvalidRequest("give exactly one of prompt or messages")
    system = process.record.system_prompt
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidRequest("prompt must be a string")
        call_input = {"prompt": prompt}
        rendered = raw_prompt(system, prompt)
        parse_special = False  # user text that looks like a control token stays text
    else:
        if process.template is None:
            raise InvalidRequest("this process has no chat template; send a prompt, or spawn with a chat template")
        messages = validate_messages(messages)
        call_input = {"messages": messages}
        rendered = render(process.template, with_system(system, messages))
        parse_special = True
        stops = list(sampling.stop) + [s for s in process.template.stop if s not in sampling.stop]
        sampling = SamplingParams.from_json({**sampling.to_json(), "stop": stops})
    n_prompt = len(tokenize_prompt(vocabulary(process.model_path), rendered, parse_special))
    n_ctx = process.settings.n_ctx
    if n_prompt >= n_ctx:
        raise PromptTooLong(f"prompt is {n_prompt} tokens; this process's context holds {n_ctx}")
    return CallPlan(process.id, call_input, rendered, parse_special, sampling, n_prompt)


# ---------------------------------------------------------------------------- messages

# process ID -> (last nonce, its chain value, its message ID, ID of the newest Message item tagged with the process)
_chains: dict[str, tuple[int, bytes, str | None, str | None]] = {}
_chain_locks: dict[str, threading.Lock] = {}


def _chain_lock(process_id: str) -> threading.Lock:
    with _cache_lock:
        return _chain_locks.setdefault(process_id, threading.Lock())


def _newest_message_id(store, process_id: str) -> str | None:
    ids = records.query_ids(store, [("Type", [records.MessageRecord.type]), ("Process", [process_id])], limit=1)
    return ids[0] if ids else None


def _last_chain(store, process: Process) -> tuple[int, bytes, str | None]:
    """Return (nonce, chain value, message ID) of the process's latest message ((0, initial, None) before any).

    Cached, but checked against the store's newest Message item (one indexed query), so
    messages another OS process wrote into the same data folder are not overwritten.
    """
    newest = _newest_message_id(store, process.id)
    cached = _chains.get(process.id)
    if cached is not None and cached[3] == newest:
        return cached[:3]
    last = (0, records.initial_chain(process.id), None)
    for message_id in records.message_ids_of(store, process.id):
        stored = records.load_record(store, message_id, records.MessageRecord.type)
        if stored.owner_address != process.owner_address:
            continue  # only the process owner's messages are part of its order
        if stored.record.nonce > last[0]:
            last = (stored.record.nonce, b64url.decode(stored.record.hash_chain), message_id)
    _chains[process.id] = (*last, newest)
    return last


class MessageWrite:
    """A signed Message being stored on the record writer thread.

    `wait()` returns once the Message is durable (or raises why it could not be stored).
    A call's Result is stored only after its Message, and the caller is answered only
    after both, so overlapping the write with the model weakens no durability.
    """

    def __init__(self, message_id: str, future: Future | None = None):
        self.message_id = message_id
        self._future = future

    def done(self) -> bool:
        return self._future is None or self._future.done()

    def wait(self) -> str:
        if self._future is not None:
            self._future.result()
        return self.message_id


# One writer thread: Messages are stored in the order their nonces were given, so a
# failed write fails every later pending Message of the process too (they name it).
_record_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="record-writer")
_pending: dict[str, MessageWrite] = {}  # process ID -> its newest Message write
_signer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="record-signer")


def _store_after(store, signed: records.SignedRecord, previous: MessageWrite | None) -> str:
    if previous is not None:
        previous.wait()  # a Message must not be stored after the one it names failed
    return records.store_record(store, signed)


def _validate_caller(caller, fee) -> None:
    if not isinstance(caller, str) or not caller or len(caller.encode("utf-8")) > MAX_CALLER_BYTES:
        raise InvalidRequest(f"caller must be a non-empty string of at most {MAX_CALLER_BYTES} bytes")
    if not isinstance(fee, int) or isinstance(fee, bool) or fee < 0:
        raise InvalidRequest(f"fee must be an integer >= 0, got {fee!r}")


def start_message(store, plan: CallPlan, caller: str, fee: int = 0) -> tuple[PreparedCall, MessageWrite]:
    """Given a planned call, its caller and fee, sign its Message and start storing it; return both.

    The call can run at once (its seed comes from the signed Message's ID); pass the
    MessageWrite to `write_result` / `write_failure`, which wait for it.
    """
    _validate_caller(caller, fee)
    process = get_process(store, plan.process_id)
    with _chain_lock(process.id):
        pending = _pending.get(process.id)
        if pending is not None and not pending.done():
            nonce, previous, previous_id = _chains[process.id][:3]  # ours, still being stored
        else:
            nonce, previous, previous_id = _last_chain(store, process)
        nonce += 1
        draft = records.MessageRecord(
            process=process.id,
            caller=caller,
            nonce=nonce,
            input=plan.input,
            rendered_prompt=plan.rendered_prompt,
            parse_special=plan.parse_special,
            sampling=plan.sampling.to_json(),
            fee=fee,
            previous=previous_id,
            hash_chain="",
        )
        chain = records.next_chain(previous, draft.content_hash())
        message = records.MessageRecord(**{**asdict(draft), "hash_chain": b64url.encode(chain)})
        signed = records.sign_record(store, message)
        future = _record_writer.submit(_store_after, store, signed, pending)
        write = MessageWrite(signed.id, future)
        _pending[process.id] = write
        # If this write fails, the store's newest Message differs from this ID and the next
        # call rescans the store instead of trusting the cache.
        _chains[process.id] = (nonce, chain, signed.id, signed.id)
    return call_for(process, signed.id, message), write


def prepare_message(store, plan: CallPlan, caller: str, fee: int = 0) -> PreparedCall:
    """Given a planned call, its caller and the fee paid, write the Message record and return the call."""
    call, write = start_message(store, plan, caller, fee)
    write.wait()
    return call


def call_for(process: Process, message_id: str, message: records.MessageRecord) -> PreparedCall:
    """Given a process and one of its messages, return the call to execute (seed resolved)."""
    sampling = dict(message.sampling)
    if sampling.get("seed") is None:
        sampling["seed"] = records.seed_from_message_id(message_id)
    return PreparedCall(
        process_id=process.id,
        message_id=message_id,
        nonce=message.nonce,
        model_id=process.record.model,
        model_path=str(process.model_path),
        settings=dict(process.record.settings),
        prompt=message.rendered_prompt,
        parse_special=message.parse_special,
        sampling=sampling,
    )


# ---------------------------------------------------------------------------- execution

_engines: "OrderedDict[tuple, Engine]" = OrderedDict()
_engines_lock = threading.Lock()


def engine_for(model_path: str, settings: EngineSettings) -> Engine:
    """Return a loaded engine for this file and settings, reusing one this OS process already has."""
    key = (str(model_path), tuple(sorted(settings.to_json().items())))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is not None:
            _engines.move_to_end(key)
            return engine
        engine = Engine.from_path(model_path, settings)
        _engines[key] = engine
        while len(_engines) > ENGINE_CACHE_SIZE:
            _, old = _engines.popitem(last=False)
            old.close()
        return engine


def close_engines() -> None:
    """Free every cached engine (llama.cpp frees badly during interpreter teardown, so do it first)."""
    with _engines_lock:
        while _engines:
            _, engine = _engines.popitem()
            engine.close()


atexit.register(close_engines)


def execute(call: PreparedCall, on_text=None, engine: Engine | None = None, message_id_later=None) -> Generation:
    """Given a prepared call, run it on llama.cpp and return the generation (no store access).

    A call whose Message is still being signed has no seed and no message_id yet:
    `message_id_later()` gives the ID once the prompt is evaluated, and the seed follows
    from it as it always does.
    """
    settings = EngineSettings.from_json(call.settings)
    engine = engine or engine_for(call.model_path, settings)
    sampling = SamplingParams.from_json(call.sampling)
    seed_later = None
    if sampling.seed is None and message_id_later is not None:
        seed_later = lambda: records.seed_from_message_id(message_id_later())  # noqa: E731
    return engine.generate(call.prompt, sampling, special=call.parse_special, on_text=on_text, seed_later=seed_later)


def execute_job(payload: dict, emit) -> dict:
    """Herder worker entry ("inference.processes:execute_job"): payload is PreparedCall.to_json().

    Emits text pieces as they are generated; returns generation_to_json(generation).
    A payload without a seed gets its message ID from the herder once the server has
    signed the Message (herder.late_value).
    """
    from inference.herder import late_value

    generation = execute(PreparedCall.from_json(payload), on_text=emit, message_id_later=late_value)
    return generation_to_json(generation)


def unsigned_call(process: Process, plan: CallPlan) -> PreparedCall:
    """Given a planned call, return what a worker can start on before its Message is signed."""
    return PreparedCall(
        process_id=process.id,
        message_id="",
        nonce=0,
        model_id=process.record.model,
        model_path=str(process.model_path),
        settings=dict(process.record.settings),
        prompt=plan.rendered_prompt,
        parse_special=plan.parse_special,
        sampling=plan.sampling.to_json(),  # seed None: derived from the Message's ID
    )


def generation_to_json(generation: Generation) -> dict:
    return {
        "text": generation.text,
        "token_ids": list(generation.token_ids),
        "prompt_tokens": generation.prompt_tokens,
        "prompt_token_hash": generation.prompt_token_hash,
        "finish_reason": generation.finish_reason,
        "timings": generation.timings,
    }


def generation_from_json(data: dict) -> Generation:
    return Generation(
        text=data["text"],
        token_ids=tuple(data["token_ids"]),
        prompt_tokens=data["prompt_tokens"],
        prompt_token_hash=data["prompt_token_hash"],
        finish_reason=data["finish_reason"],
        timings=data.get("timings", {}),
    )


# ---------------------------------------------------------------------------- results


def write_result(store, call: PreparedCall, generation: Generation | dict, message: MessageWrite | None = None) -> CallResult:
    """Given a call and its generation (or generation_to_json of it), write the Result record.

    With `message` (from start_message) the Result is signed first, then stored once the
    Message is durable; if the Message could not be stored, its error is raised and no
    Result is written (it would answer a message that does not exist).
    """
    if isinstance(generation, dict):
        generation = generation_from_json(generation)
    record = records.ResultRecord(
        message=call.message_id,
        process=call.process_id,
        nonce=call.nonce,
        seed=call.sampling["seed"],
        text=generation.text,
        token_ids=list(generation.token_ids),
        token_hash=generation.token_hash,
        prompt_tokens=generation.prompt_tokens,
        prompt_token_hash=generation.prompt_token_hash,
        completion_tokens=generation.completion_tokens,
        finish_reason=generation.finish_reason,
        timings=generation.timings,
    )
    result_id = _store_answer(store, record, message)
    return CallResult(
        process_id=call.process_id,
        message_id=call.message_id,
        result_id=result_id,
        text=generation.text,
        token_ids=generation.token_ids,
        prompt_tokens=generation.prompt_tokens,
        finish_reason=generation.finish_reason,
        seed=call.sampling["seed"],
        timings=generation.timings,
    )


def write_failure(store, call: PreparedCall, reason: str, message: MessageWrite | None = None) -> str:
    """Given a call that could not run, write a Result with finish_reason "error"; return its ID.

    `message` as in write_result.
    """
    record = records.ResultRecord(
        message=call.message_id,
        process=call.process_id,
        nonce=call.nonce,
        seed=call.sampling["seed"],
        text="",
        token_ids=[],
        token_hash=token_hash([]),
        prompt_tokens=0,
        prompt_token_hash="",
        completion_tokens=0,
        finish_reason=ERROR_FINISH,
        timings={"error": str(reason)[:500]},
    )
    return _store_answer(store, record, message)


def _store_answer(store, record: records.ResultRecord, message: MessageWrite | None) -> str:
    """Sign a Result, wait until its Message is durable, then store the Result; return its ID."""
    signed = records.sign_record(store, record)
    if message is not None:
        message.wait()
    return records.store_record(store, signed)


def send(
    store,
    process_id: str,
    caller: str,
    prompt: str | None = None,
    messages=None,
    sampling: SamplingParams | None = None,
    fee: int = 0,
    on_text=None,
) -> CallResult:
    """Given a process and a prompt or messages, run one recorded call here and return its result."""
    plan = plan_call(store, process_id, prompt=prompt, messages=messages, sampling=sampling)
    return run_planned(store, plan, caller, fee, on_text)


def run_planned(store, plan: CallPlan, caller: str, fee: int = 0, on_text=None) -> CallResult:
    """Given a planned call, run it here with its records and return the result (see send)."""
    process_id = plan.process_id
    _validate_caller(caller, fee)
    # The Message is signed on another thread while llama.cpp evaluates the prompt.
    started = _signer.submit(start_message, store, plan, caller, fee)
    try:
        generation = execute(unsigned_call(get_process(store, process_id), plan), on_text=on_text,
                             message_id_later=lambda: started.result()[0].message_id)
    except Exception as exc:
        call, message = started.result()  # a Message that could not be signed raises here
        write_failure(store, call, f"{type(exc).__name__}: {exc}", message)
        raise
    call, message = started.result()
    return write_result(store, call, generation, message)
