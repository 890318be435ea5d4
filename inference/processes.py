"""Llama processes, server side: spawn one on a model, load one from its record, plan calls on it.

A Process record names a model and every setting that shapes its output. Whoever signed
it, a process is checked before any call runs on it with the same limits as a spawn
request (settings, this machine's CPUs, the model's context, a model this node trusts),
so a record uploaded by a stranger cannot make the node exhaust itself.

    book = ProcessBook(models, records, vocabularies, templates, identity)
    pid = book.spawn(model_id, settings, system_prompt, chat_template)
    plan = book.plan(pid, prompt=... | messages=..., sampling=...)   # rendered, counted; nothing written

Messages and Results are `inference.messages`; running a call is `inference.execution`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inference import records
from inference.chat import (
    ChatTemplate,
    TemplateRenderer,
    render,
    resolve_template,
    validate_messages,
)
from inference.errors import InvalidRequest, PromptTooLong, RecordInvalid
from inference.models import ModelCatalog, ModelMetadata
from inference.records import RecordStore
from inference.sampling import EngineSettings, SamplingParams, check_machine
from inference.vocabulary import Vocabularies

DEFAULT_N_CTX = 2048
PROCESS_CACHE = 1024  # loaded processes kept (records never change; a miss reads one record)


@dataclass(frozen=True)
class Process:
    """A checked process record with what calls need: its engine settings, model file and template.

    `verified` is the model file's check against its ID, maybe still running: a call may
    start on the file meanwhile, but nothing computed from it is answered before it passes.
    """

    id: str
    owner_address: str
    record: records.ProcessRecord
    model_path: Path
    template: ChatTemplate | None
    settings: EngineSettings
    verified: Future[None]


@dataclass(frozen=True)
class CallPlan:
    """A call rendered and counted, nothing written yet (the herder prices it from here)."""

    process_id: str
    input: dict[str, Any]
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
    settings: dict[str, Any]
    prompt: str
    parse_special: bool
    sampling: dict[str, Any]  # seed set, except before the Message is signed (see unsigned_call)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreparedCall:
        return cls(**data)


@dataclass(frozen=True)
class CallResult:
    """What a finished call returns: the output and the IDs of its three records."""

    process_id: str
    message_id: str
    result_id: str
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    finish_reason: str
    seed: int
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


def raw_prompt(system: str | None, prompt: str) -> str:
    """Return the text a raw prompt is tokenized as: the process's system prompt (if any), a newline, the prompt."""
    return f"{system}\n{prompt}" if system else prompt


def with_system(system: str | None, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Return chat messages preceded by the process's system prompt (if any) as a system message."""
    return ([{"role": "system", "content": system}] if system else []) + list(messages)


def call_for(process: Process, message_id: str, message: records.MessageRecord) -> PreparedCall:
    """Given a process and one of its messages, return the call to execute (seed resolved)."""
    sampling = dict(message.sampling)
    if sampling.get("seed") is None:
        sampling["seed"] = records.seed_from_message_id(message_id)
    return PreparedCall(process.id, message_id, message.nonce, process.record.model, str(process.model_path),
                        dict(process.record.settings), message.rendered_prompt, message.parse_special, sampling)


def unsigned_call(process: Process, plan: CallPlan) -> PreparedCall:
    """Given a planned call, return what a worker can start on before its Message is signed."""
    # seed None: derived from the Message's ID, sent to the worker once it is signed.
    return PreparedCall(process.id, "", 0, process.record.model, str(process.model_path),
                        dict(process.record.settings), plan.rendered_prompt, plan.parse_special,
                        plan.sampling.to_json())


class ProcessBook:
    """The processes of one store: drafted, written, loaded (checked, cached) and planned on."""

    def __init__(self, models: ModelCatalog, records_: RecordStore, vocabularies: Vocabularies,
                 templates: TemplateRenderer, identity: Callable[[], dict[str, Any]]):
        self.models = models
        self.records = records_
        self.vocabularies = vocabularies
        self.templates = templates
        self.identity = identity
        self._cache: OrderedDict[str, Process] = OrderedDict()
        self._lock = threading.Lock()

    # -- spawning

    def draft(self, model_id: str, settings: EngineSettings | None = None, system_prompt: str | None = None,
              chat_template: str | None = None) -> Process:
        """Given a model ID (or name) and settings, return the process that spawning would record, unwritten (id "").

        A name is resolved here: the record names the model by ID. chat_template: None uses
        the model's own template when it has one, else the named one its header calls for
        (recorded as `chat_template_chosen`); "model" or a name of
        inference.chat.NAMED_TEMPLATES picks one explicitly.
        """
        model_id = self.models.model_id(model_id)
        model = self.models.get(model_id)
        metadata = model.metadata
        if settings is None:
            settings = default_settings(metadata)
        if not isinstance(settings, EngineSettings):
            raise InvalidRequest("settings must be EngineSettings")
        settings.validate()
        check_machine(settings, metadata.context_length)
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise InvalidRequest("system_prompt must be a string")
        template = _template_of(chat_template, metadata)
        # Recorded only when the node chose the template from the header (nothing asked, none in the model).
        guessed = metadata.template_choice if chat_template is None and metadata.chat_template is None else None
        record = records.ProcessRecord(
            model=model_id,
            engine=self.identity(),
            settings=settings.to_json(),
            chat_template=template.name if template else None,
            chat_template_sha256=template.source_sha256 if template else None,
            system_prompt=system_prompt,
            chat_template_chosen=guessed.to_json() if guessed is not None else None,
        )
        return Process("", self.node_address, record, model.path, template, settings, model.verified)

    @property
    def node_address(self) -> str:
        """Return the address that signs this node's records."""
        return self.records.node_address

    def write(self, draft: Process) -> str:
        """Given a drafted process, write its Process record and return the process ID."""
        process_id = self.records.write(draft.record)
        self._remember(Process(process_id, draft.owner_address, draft.record, draft.model_path, draft.template,
                               draft.settings, draft.verified))
        return process_id

    def spawn(self, model_id: str, settings: EngineSettings | None = None, system_prompt: str | None = None,
              chat_template: str | None = None) -> str:
        """Given a model ID and settings, write a Process record and return the process ID (see draft)."""
        return self.write(self.draft(model_id, settings, system_prompt, chat_template))

    # -- loading

    def get(self, process_id: str) -> Process:
        """Given a process ID, return the process, checked like a spawn request; cached, records never change."""
        with self._lock:
            cached = self._cache.get(process_id)
            if cached is not None:
                self._cache.move_to_end(process_id)
                return cached
        stored = self.records.load(process_id, records.ProcessRecord.type)
        record = stored.record
        model = self.models.get(record.model)
        metadata = model.metadata
        settings = _checked_settings(process_id, record, metadata)
        template = None
        if record.chat_template:
            try:
                template = resolve_template(record.chat_template, metadata.chat_template,
                                            metadata.bos_token, metadata.eos_token)
            except InvalidRequest as exc:
                raise RecordInvalid(f"process {process_id} cannot run here: {exc}") from None
            if template.source_sha256 != record.chat_template_sha256:
                raise RecordInvalid(f"process {process_id}: chat template {record.chat_template!r} "
                                    "differs from the recorded one")
        return self._remember(Process(process_id, stored.owner_address, record, model.path, template, settings,
                                      model.verified))

    def _remember(self, process: Process) -> Process:
        with self._lock:
            self._cache[process.id] = process
            while len(self._cache) > PROCESS_CACHE:
                self._cache.popitem(last=False)
        return process

    # -- planning

    def plan(self, process_id: str, prompt: str | None = None, messages: Any = None,
             sampling: SamplingParams | None = None) -> CallPlan:
        """Given a process ID and a prompt (raw completion) or chat messages, return the rendered, counted call."""
        return self.plan_for(self.get(process_id), prompt=prompt, messages=messages, sampling=sampling)

    def plan_for(self, process: Process, prompt: str | None = None, messages: Any = None,
                 sampling: SamplingParams | None = None) -> CallPlan:
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
            call_input: dict[str, Any] = {"prompt": prompt}
            rendered = raw_prompt(system, prompt)
            parse_special = False  # user text that looks like a control token stays text
        else:
            if process.template is None:
                raise InvalidRequest(_no_template_reason(process))
            messages = validate_messages(messages)
            call_input = {"messages": messages}
            rendered = self.render(process, messages)
            parse_special = True
            stops = list(sampling.stop) + [s for s in process.template.stop if s not in sampling.stop]
            sampling = SamplingParams.from_json({**sampling.to_json(), "stop": stops})
        n_prompt = self.vocabularies.count_tokens(process.model_path, rendered, parse_special)
        n_ctx = process.settings.n_ctx
        if n_prompt >= n_ctx:
            raise PromptTooLong(f"prompt is {n_prompt} tokens; this process's context holds {n_ctx}")
        return CallPlan(process.id, call_input, rendered, parse_special, sampling, n_prompt)

    def render(self, process: Process, messages: list[dict[str, str]]) -> str:
        """Given a process with a template and validated messages, return the rendered prompt (in the sandbox)."""
        if process.template is None:
            raise InvalidRequest("this process has no chat template")
        return render(self.templates, process.template, with_system(process.record.system_prompt, messages))


def _no_template_reason(process: Process) -> str:
    """Return why chat messages cannot go to a process without a template, and what to do."""
    chosen = process.record.chat_template_chosen
    why = f" (no template fits its model: {chosen['reason']})" if chosen else ""
    return (f"this process has no chat template{why}; send a prompt, or name a chat template "
            "(chat_template in the request or the spawn)")


def default_settings(metadata: ModelMetadata) -> EngineSettings:
    """Given a model's header, return the settings of a process spawned without any."""
    return EngineSettings(n_ctx=min(DEFAULT_N_CTX, metadata.context_length or DEFAULT_N_CTX))


def _template_of(chat_template: str | None, metadata: ModelMetadata) -> ChatTemplate | None:
    fallback = metadata.template_choice.name if metadata.template_choice else None
    return resolve_template(chat_template, metadata.chat_template, metadata.bos_token, metadata.eos_token, fallback)


def _checked_settings(process_id: str, record: records.ProcessRecord, metadata: ModelMetadata) -> EngineSettings:
    """Given a loaded Process record, return its settings when a spawn request with them would pass."""
    if record.seed_policy != records.SEED_POLICY:
        raise RecordInvalid(f"process {process_id} has seed policy {record.seed_policy!r}; "
                            f"this node runs {records.SEED_POLICY!r}")
    try:
        settings = EngineSettings.from_json(record.settings)
        check_machine(settings, metadata.context_length)
    except InvalidRequest as exc:
        raise RecordInvalid(f"process {process_id} cannot run here: {exc}") from None
    return settings
