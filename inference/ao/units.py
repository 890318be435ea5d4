"""This node's MU and CU for llama processes, over the herder's CallService.

    units = AoUnits(service, module_id)
    units.accept(raw_item)                    # MU: a spawn or a message; {"message", "id"} once accepted
    found = units.lookup(message, process)    # CU: a result object, or the AoCall still running
    page = units.results(process, ...)        # CU: {pageInfo, edges: [{cursor, node}]}
    units.dry_run(process, json_message)      # CU: runs the model, writes nothing, charges nothing

The node is the scheduler of every process spawned here: it assigns each accepted message
its nonce and hash chain by writing the Message record that names it (see inference.ao).
A spawn or message is stored only once it passed every check (signature, module, scheduler,
model, tags, prompt) and, for a message, once its fee is reserved.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from inference.ao import binding, compute
from inference.ao.protocol import (
    TYPE_PROCESS,
    AoItem,
    CallOutcome,
    InferenceOptions,
    inference_options,
    kind_of,
    read_item,
    result_object,
    spawn_options,
)
from inference.errors import InvalidRequest, ModelNotFound, RecordNotFound
from inference.herder.service import CallService, RunningCall
from inference.processes import CallPlan, Process, default_settings
from inference.records import SignedRequest
from inference.sampling import SamplingParams
from permastore.protocol import b64url

PROCESS_CACHE = 1024  # AO process ID -> Process record ID (bindings never change)
# Distinct (model, settings) pairs whose loading spawns ask the workers to do ahead of the first
# message: every worker (and replacement) replays each one, so strangers' spawns cannot grow it.
MAX_WARMED = 8


def accepted(item_id: str) -> dict[str, str]:
    """The MU's answer to an item it took (as AO's MU answers)."""
    return {"message": "Processing DataItem", "id": item_id}


def model_id_of(models: Any, value: str) -> str:
    """Given the model catalog and a spawn's Model tag, return the model ID it names.

    The one place a spawn resolves its model: through the catalog's resolver of names
    (`model_id(ref)`, the Ollama-style names) where the catalog has one, else by ID only.
    """
    resolve = getattr(models, "model_id", None)
    if resolve is not None:
        return resolve(value)
    if b64url.is_id(value):
        return value
    raise ModelNotFound(f"model {value!r} not found: not a model ID (43 base64url characters), "
                        "and this node resolves models by ID only")


@dataclass
class AoCall:
    """A message accepted by the MU whose call is still running (or just settled)."""

    message: str  # the AO message ID
    process: str  # the AO process ID
    caller: str
    running: RunningCall

    def outcome(self) -> CallOutcome:
        """Given a call that settled with a result, return its evaluation."""
        result = self.running.settled.result()
        return CallOutcome(self.message, self.process, self.caller, self.running.nonce, result.text,
                           result.prompt_tokens, result.completion_tokens, result.finish_reason, result.seed,
                           {"process": result.process_id, "message": result.message_id, "result": result.result_id})


class AoUnits:
    """The MU and CU of one node: spawns and messages in, AO result objects out."""

    def __init__(self, service: CallService, module_id: str):
        self.service = service
        self.module_id = module_id
        self.scheduler = service.node_address
        self.records = service.inference.records
        self.processes = service.inference.processes
        self._lock = threading.Lock()
        self._spawn_lock = threading.Lock()
        self._running: dict[str, AoCall] = {}
        self._starting: dict[str, Future[None]] = {}
        self._bound: OrderedDict[str, str] = OrderedDict()
        self._warmed: set[tuple[str, str]] = set()
        self.dry_runs = compute.DryRuns(service)

    # -- MU

    def accept(self, raw: bytes) -> dict[str, str]:
        """Given the bytes posted to the MU, take the spawn or message they hold; raise InferenceError."""
        item = read_item(raw)
        if kind_of(item) == TYPE_PROCESS:
            return self.spawn(item)
        return self.send(item)

    def spawn(self, item: AoItem) -> dict[str, str]:
        """Given a verified spawn item, bind a Process record to it (once) and return the MU's answer."""
        options = spawn_options(item, self.module_id, self.scheduler)
        model_id = model_id_of(self.service.inference.models, options.model)
        with self._spawn_lock:  # one Process record per spawn item, however often it is posted
            if binding.process_record_for(self.records, item.id, self.scheduler) is None:
                draft = self._draft(item.id, model_id, options)
                if self.records.store.info(item.id) is None:
                    self.records.store.put_item(item.raw)
                self._remember(item.id, self.processes.write(draft))
        self._warm(self.process_for(item.id))
        return accepted(item.id)

    def _warm(self, process: Process) -> None:
        """Have the workers load a new process's model now, so its first message finds it loaded."""
        key = (str(process.model_path), json.dumps(process.record.settings, sort_keys=True))
        with self._lock:
            if key in self._warmed or len(self._warmed) >= MAX_WARMED:
                return
            self._warmed.add(key)
        self.service.warm(process)

    def _draft(self, spawn_id: str, model_id: str, options: Any) -> Process:
        settings = None
        if options.settings:
            metadata = self.service.inference.models.get(model_id).metadata
            settings = replace(default_settings(metadata), **options.settings)
        draft = self.processes.draft(model_id, settings, options.system_prompt, options.chat_template)
        record = replace(draft.record, request=spawn_id)
        template = draft.template
        if options.raw_prompts:
            record, template = replace(record, chat_template=None, chat_template_sha256=None), None
        return replace(draft, record=record, template=template)

    def send(self, item: AoItem) -> dict[str, str]:
        """Given a verified message item, start its call (once) and return the MU's answer."""
        assert item.target is not None
        process = self.process_for(item.target)
        options = inference_options(item.tags, item.data)
        plan = self.plan(process, options)  # every check before anything is reserved or stored
        with self._lock:
            if item.id in self._running:
                return accepted(item.id)
            first = self._starting.get(item.id)
            if first is None:
                self._starting[item.id] = Future()
        if first is not None:  # the same item posted twice at once: answer as the first is answered
            first.result()
            return accepted(item.id)
        try:
            if binding.message_record_for(self.records, item.id, self.scheduler) is None:
                self._start(item, plan, options)
        except BaseException as exc:
            self._finish_starting(item.id, exc)
            raise
        self._finish_starting(item.id, None)
        return accepted(item.id)

    def _start(self, item: AoItem, plan: CallPlan, options: InferenceOptions) -> None:
        running = self.service.start(plan, item.owner_address, options.payment, SignedRequest(item.id, item.raw))
        call = AoCall(item.id, item.target or "", item.owner_address, running)
        with self._lock:
            self._running[item.id] = call
        # Forgotten once settled: by then its Result is durable and found through the records.
        running.settled.add_done_callback(lambda _: self._forget(item.id))

    def _finish_starting(self, message_id: str, error: BaseException | None) -> None:
        with self._lock:
            future = self._starting.pop(message_id)
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def _forget(self, message_id: str) -> None:
        with self._lock:
            self._running.pop(message_id, None)

    def plan(self, process: Process, options: InferenceOptions) -> CallPlan:
        """Given a llama process and an Inference message's options, return the rendered, counted call."""
        sampling = SamplingParams.from_json(options.sampling)
        if process.template is None:
            return self.processes.plan_for(process, prompt=options.text, sampling=sampling)
        return self.processes.plan_for(process, messages=[{"role": "user", "content": options.text}],
                                       sampling=sampling)

    # -- processes

    def process_for(self, process_id: str) -> Process:
        """Given an AO process ID, return the llama process bound to it; RecordNotFound or InvalidRequest."""
        if not isinstance(process_id, str) or not b64url.is_id(process_id):
            raise InvalidRequest(f"{process_id!r} is not a process ID (43 base64url characters)")
        with self._lock:
            record_id = self._bound.get(process_id)
        if record_id is None:
            record_id = self._find_process(process_id)
            self._remember(process_id, record_id)
        return self.processes.get(record_id)

    def _find_process(self, process_id: str) -> str:
        info = self.records.store.info(process_id)
        if info is None:
            raise RecordNotFound(f"process {process_id} is not known here")
        if binding.scheduler_of(self.records, process_id) is None:
            raise InvalidRequest(f"{process_id} is not a llama process: it is not an AO spawn (Type: Process)")
        module = binding.last_tag(info, "Module")
        if module != self.module_id:
            raise InvalidRequest(f"process {process_id} is not a llama process: it runs module {module}, "
                                 f"not this node's {self.module_id}")
        record_id = binding.process_record_for(self.records, process_id, self.scheduler)
        if record_id is None:
            raise RecordNotFound(f"process {process_id} was not spawned through this node's MU")
        return record_id

    def _remember(self, process_id: str, record_id: str) -> None:
        with self._lock:
            self._bound[process_id] = record_id
            while len(self._bound) > PROCESS_CACHE:
                self._bound.popitem(last=False)

    # -- CU

    def lookup(self, message_id: str, process_id: str) -> dict[str, Any] | AoCall:
        """Given a message and its process, return its result object, or the AoCall while it runs."""
        with self._lock:
            call = self._running.get(message_id)
        if call is not None:
            if call.process != process_id:
                raise RecordNotFound(f"message {message_id} is not a message of process {process_id}")
            return call
        process = self.process_for(process_id)
        return compute.stored_result(self.records, self.scheduler, process, process_id, message_id)

    def settled_body(self, call: AoCall) -> dict[str, Any]:
        """Given a settled AoCall, return its result object (a failed call's, from its failure Result)."""
        if call.running.settled.exception() is None:
            return result_object(call.outcome())
        process = self.process_for(call.process)
        return compute.stored_result(self.records, self.scheduler, process, call.process, call.message)

    def results(self, process_id: str, start: str | None, stop: str | None, sort: str,
                limit: str | None) -> dict[str, Any]:
        """Given a process and AO's paging arguments, return one page of its results."""
        process = self.process_for(process_id)
        window = compute.ResultWindow.of(start, stop, sort, limit)
        return compute.results_page(self.records, self.scheduler, process, process_id, window)

    def dry_run(self, process_id: str, body: Any, local: bool) -> dict[str, Any] | Future[dict[str, Any]]:
        """Given a process, a dry-run message and whether its caller is on this machine, return its
        result object (now or as a Future)."""
        process = self.process_for(process_id)
        return self.dry_runs.run(self, process, process_id, body, local)

