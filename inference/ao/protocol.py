"""AO's wire shapes for llama processes, as pure functions: items in, options and result objects out.

    item = read_item(raw)                                   # verified, or InvalidRequest
    spawn = spawn_options(item, module_id, scheduler)       # Model, System-Prompt, Chat-Template, settings
    call = inference_options(item.tags, item.data)          # Action: Inference, Max-Tokens, Seed, ...
    body = result_object(outcome)                           # {Output, Messages, Spawns, Assignments, GasUsed, Error?}

Tag values are read as AO clients write them: aoconnect puts the caller's tags first and
appends its own (`Data-Protocol`, `Variant`, `Type`, `Module`, `Scheduler`), without removing
a caller's copy, so the last occurrence of a name is the one that counts.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from inference.errors import InvalidRequest
from permastore.protocol import ans104, b64url
from permastore.protocol.errors import ProtocolError
from permastore.protocol.tags import Tag

DATA_PROTOCOL = "ao"
VARIANT = "ao.TN.1"
TYPE_PROCESS = "Process"
TYPE_MESSAGE = "Message"
ACTION_INFERENCE = "Inference"
ACTION_INFO = "Info"  # dry-run only: the process's settings, no model run
ACTION_REPLY = "Inference-Response"
RAW_TEMPLATE = "none"  # Chat-Template: none: message data is the raw prompt, no template
MAX_NUMBER_CHARS = 32

_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")
# Tag name -> (SamplingParams field, kind). Every other tag is AO's or the caller's own, and ignored.
SAMPLING_TAGS = {
    "Max-Tokens": ("max_tokens", int), "Seed": ("seed", int), "Temperature": ("temperature", float),
    "Top-K": ("top_k", int), "Top-P": ("top_p", float), "Min-P": ("min_p", float),
    "Typical-P": ("typical_p", float), "Repeat-Penalty": ("repeat_penalty", float),
    "Frequency-Penalty": ("frequency_penalty", float), "Presence-Penalty": ("presence_penalty", float),
}
# Tag name -> (EngineSettings field, kind), read from a spawn item.
SETTINGS_TAGS = {
    "N-Ctx": ("n_ctx", int), "N-Batch": ("n_batch", int), "N-Ubatch": ("n_ubatch", int),
    "N-Threads": ("n_threads", int), "Penalty-Last-N": ("penalty_last_n", int), "Flash-Attn": ("flash_attn", bool),
}


@dataclass(frozen=True)
class AoTags:
    """An item's tags as text pairs, in order."""

    pairs: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, tags: list[Tag]) -> AoTags:
        """Given an item's tags, return them as text; InvalidRequest when one is not UTF-8."""
        try:
            return cls(tuple((t.name.decode("utf-8"), t.value.decode("utf-8")) for t in tags))
        except UnicodeDecodeError:
            raise InvalidRequest("tags must be UTF-8 text") from None

    @classmethod
    def from_json(cls, tags: Any) -> AoTags:
        """Given a dry-run's JSON tags [{name, value}], return them; InvalidRequest for any other shape."""
        if not isinstance(tags, list) or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("value"), str) for t in tags
        ):
            raise InvalidRequest("Tags must be a list of {name, value} strings")
        return cls(tuple((t["name"], t["value"]) for t in tags))

    def last(self, name: str) -> str | None:
        """Return the last value of a tag (the one aoconnect wrote), None when absent."""
        for key, value in reversed(self.pairs):
            if key == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        """Return every value of a tag, in order."""
        return [value for key, value in self.pairs if key == name]

    def is_ao(self) -> bool:
        return DATA_PROTOCOL in self.all("Data-Protocol")


@dataclass(frozen=True)
class AoItem:
    """A verified data item as AO sees it: who signed it, what it targets, its tags and data."""

    id: str
    owner_address: str
    target: str | None
    tags: AoTags
    data: bytes
    raw: bytes

    @property
    def type(self) -> str | None:
        return self.tags.last("Type") if self.tags.is_ao() else None


def read_item(raw: bytes) -> AoItem:
    """Given the bytes posted to the MU, return the item when its signature holds, else InvalidRequest."""
    try:
        header = ans104.verify_item(raw)  # Security: a tampered item never reaches anything below
    except ProtocolError as exc:
        raise InvalidRequest(f"not a valid signed ANS-104 data item: {exc}") from None
    target = b64url.encode(header.target) if header.target is not None else None
    return AoItem(header.id, header.owner_address, target, AoTags.of(header.tags),
                  bytes(memoryview(raw)[header.header_size:]), raw)


def kind_of(item: AoItem) -> str:
    """Given an item posted to the MU, return Process or Message; InvalidRequest for anything else."""
    if not item.tags.is_ao():
        raise InvalidRequest("not an AO item: it needs the tag Data-Protocol: ao")
    kind = item.type
    if kind == TYPE_PROCESS:
        if item.target is not None:
            raise InvalidRequest("a Process (spawn) item must not have a target")
        return kind
    if kind == TYPE_MESSAGE:
        if item.target is None:
            raise InvalidRequest("a Message item needs a target: the process it is sent to")
        return kind
    raise InvalidRequest(f"this MU takes items of Type Process or Message, not {kind!r}")


def _text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"{what} must be UTF-8 text") from None


def _typed(name: str, value: str, kind: type) -> Any:
    """Given a tag's text and the type it carries, return the value; InvalidRequest naming the tag."""
    if kind is bool:
        if value not in ("true", "false"):
            raise InvalidRequest(f"tag {name} must be true or false, got {value!r}")
        return value == "true"
    pattern = _INTEGER if kind is int else _NUMBER
    if len(value) > MAX_NUMBER_CHARS or not pattern.fullmatch(value):
        raise InvalidRequest(f"tag {name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    return int(value) if kind is int else float(value)


@dataclass(frozen=True)
class SpawnOptions:
    """What a spawn item asks for: the model, its prompt and template, engine settings overrides."""

    model: str
    system_prompt: str | None
    chat_template: str | None  # None: the model's own (if any)
    raw_prompts: bool  # Chat-Template: none
    settings: dict[str, Any]


def spawn_options(item: AoItem, module_id: str, scheduler: str) -> SpawnOptions:
    """Given a spawn item, this node's module ID and scheduler address, return its options or InvalidRequest."""
    tags = item.tags
    module, named_scheduler = tags.last("Module"), tags.last("Scheduler")
    if module != module_id:
        raise InvalidRequest(f"Module {module!r} is not this node's llama module {module_id}")
    if named_scheduler != scheduler:
        raise InvalidRequest(f"Scheduler {named_scheduler!r} is not this node ({scheduler}); "
                             "send the spawn to that scheduler's MU")
    model = tags.last("Model")
    if not model:
        raise InvalidRequest("a llama process needs a Model tag: the ID of a GGUF model this node holds")
    system_prompt = tags.last("System-Prompt")
    if item.data.strip():  # aoconnect sends " " when the caller gave no data
        if system_prompt is not None:
            raise InvalidRequest("give the system prompt as the System-Prompt tag or as the data, not both")
        system_prompt = _text(item.data, "the spawn's data (the system prompt)")
    template = tags.last("Chat-Template")
    settings = {field: _typed(name, tags.last(name) or "", kind)
                for name, (field, kind) in SETTINGS_TAGS.items() if tags.last(name) is not None}
    raw = template == RAW_TEMPLATE
    return SpawnOptions(model, system_prompt, None if raw else template, raw, settings)


@dataclass(frozen=True)
class InferenceOptions:
    """What an Inference message asks for: the user's text, sampling (SamplingParams JSON), a payment."""

    text: str
    sampling: dict[str, Any]
    payment: int | None


def action_of(tags: AoTags) -> str:
    """Return the message's Action; InvalidRequest when it has none."""
    action = tags.last("Action")
    if not action:
        raise InvalidRequest(f"a message to a llama process needs an Action tag ({ACTION_INFERENCE})")
    return action


def inference_options(tags: AoTags, data: bytes) -> InferenceOptions:
    """Given an Inference message's tags and data, return its options; InvalidRequest for a bad tag."""
    action = action_of(tags)
    if action != ACTION_INFERENCE:
        raise InvalidRequest(f"unknown Action {action!r}: a llama process answers {ACTION_INFERENCE}")
    text = _text(data, "the message's data (the user's text)")
    if not text.strip():
        raise InvalidRequest("an Inference message needs the user's text as its data")
    sampling = {field: _typed(name, tags.last(name) or "", kind)
                for name, (field, kind) in SAMPLING_TAGS.items() if tags.last(name) is not None}
    stops = tags.all("Stop")
    if stops:
        sampling["stop"] = stops
    payment = tags.last("Payment")
    amount = _typed("Payment", payment, int) if payment is not None else None
    if amount is not None and amount < 0:
        raise InvalidRequest("tag Payment must be a non-negative integer")
    return InferenceOptions(text, sampling, amount)


@dataclass(frozen=True)
class DryRun:
    """A dry-run message as aoconnect sends it (JSON, unsigned): target, claimed owner, tags, data."""

    id: str
    target: str
    owner: str
    tags: AoTags
    data: bytes


def dry_run_of(body: Any, process_id: str) -> DryRun:
    """Given a dry-run JSON body and the process-id query value, return the message; InvalidRequest."""
    if not isinstance(body, dict):
        raise InvalidRequest("a dry-run body is a JSON message {Target, Owner, Tags, Data}")
    target = body.get("Target", process_id)
    if target != process_id:
        raise InvalidRequest(f"the message's Target {target!r} is not the process-id {process_id!r}")
    data = body.get("Data", "")
    if not isinstance(data, str):
        data = json.dumps(data)
    owner, given_id = body.get("Owner"), body.get("Id")
    return DryRun(given_id if isinstance(given_id, str) else "", process_id, owner if isinstance(owner, str) else "", AoTags.from_json(body.get("Tags", [])),
                  data.encode("utf-8"))


@dataclass(frozen=True)
class CallOutcome:
    """One evaluated message, from a finished call or from its records."""

    message: str  # the AO message ID (the caller's item)
    process: str  # the AO process ID (the spawn item)
    caller: str
    nonce: int
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""
    seed: int | None = None
    records: dict[str, str] | None = None  # {process, message, result}: the node's record IDs
    error: str | None = None


def result_object(outcome: CallOutcome) -> dict[str, Any]:
    """Given an evaluated message, return AO's result object: the text as Output and as one reply Message."""
    output = {
        "data": outcome.text,
        "finish_reason": outcome.finish_reason,
        "seed": outcome.seed,
        "nonce": outcome.nonce,
        "usage": {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens},
        "record": outcome.records,
    }
    body: dict[str, Any] = {
        "Output": output,
        "Messages": [] if outcome.error is not None else [_reply(outcome)],
        "Spawns": [],
        "Assignments": [],
        "GasUsed": outcome.prompt_tokens + outcome.completion_tokens,
    }
    if outcome.error is not None:
        body["Error"] = outcome.error
    return body


def _reply(outcome: CallOutcome) -> dict[str, Any]:
    """The message a llama process sends back to its caller: Action Inference-Response, data the text."""
    tags = [("Data-Protocol", DATA_PROTOCOL), ("Variant", VARIANT), ("Type", TYPE_MESSAGE),
            ("Action", ACTION_REPLY), ("Reference", str(outcome.nonce)), ("Pushed-For", outcome.message),
            ("Finish-Reason", outcome.finish_reason)]
    if outcome.records:
        tags.append(("Result", outcome.records["result"]))
    return {
        "Target": outcome.caller,
        "Anchor": f"{outcome.nonce:032d}",  # AO's outbox anchor: the sender's message counter, zero-padded
        "Tags": [{"name": name, "value": value} for name, value in tags],
        "Data": outcome.text,
    }


def error_object(reason: str) -> dict[str, Any]:
    """Given why a message could not be evaluated, return a result object carrying only the Error."""
    return {"Output": None, "Messages": [], "Spawns": [], "Assignments": [], "GasUsed": 0, "Error": reason}
