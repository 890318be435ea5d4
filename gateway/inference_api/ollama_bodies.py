"""Ollama request bodies as typed models, validated before anything is reserved, signed or stored.

Fields Ollama clients send that change nothing here are accepted and ignored (`keep_alive`,
`truncate`, `shift`, `insecure`, the empty `tools: []` the Python client always sends).
Fields that would change the output but that this node cannot honour are refused with a
400 naming them (`images`, non-empty `tools`, `format`, `template`, `suffix`, `context`,
`think`, `logprobs`), in Ollama's own words where it has them.

`options` are mapped by `parse_options`: sampling options become SamplingParams fields
(with Ollama's defaults, not OpenAI's), load-time ones that change the output (num_ctx,
repeat_last_n, num_thread, num_batch) become the process's EngineSettings; the rest are
ignored, as Ollama ignores keys it does not know.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator, model_validator

from gateway.inference_api.schemas import flag, refuse, whole_number
from inference.errors import InvalidRequest

EMPTY: tuple[object, ...] = (None, False, "", [], {})
# Ollama's DefaultOptions for what sampling uses (temperature, top_k, top_p, repeat_penalty
# as Ollama; min_p 0 since Ollama applies none unless asked).
OLLAMA_DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "typical_p": 1.0,
                   "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
INT_SAMPLING = {"seed": "seed", "top_k": "top_k", "num_predict": "max_tokens"}
FLOAT_SAMPLING = {"temperature": "temperature", "top_p": "top_p", "min_p": "min_p", "typical_p": "typical_p",
                  "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
                  "frequency_penalty": "frequency_penalty"}
ENGINE_OPTIONS = {"num_ctx": "n_ctx", "repeat_last_n": "penalty_last_n", "num_thread": "n_threads",
                  "num_batch": "n_batch"}
GO_DURATION = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$|^[-+]?\d+(\.\d+)?$")


@dataclass(frozen=True)
class OllamaOptions:
    """`options` mapped: sampling fields (SamplingParams names), engine overrides, whether num_predict was unbounded."""

    sampling: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, int] = field(default_factory=dict)
    until_context_full: bool = True  # num_predict absent, 0 or negative: Ollama generates until EOS or the context ends


def _integer(name: str, value: Any) -> int:
    # Ollama accepts JSON numbers for integer options and truncates them.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f'option "{name}" must be of type integer')
    return int(value)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidRequest(f'option "{name}" must be of type number')
    return float(value)


def parse_options(options: Any) -> OllamaOptions:
    """Given a request's `options` (a JSON object or None), return them mapped; InvalidRequest on a wrong type."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidRequest("options must be an object")
    sampling: dict[str, Any] = dict(OLLAMA_DEFAULTS)
    engine: dict[str, int] = {}
    until_full = True
    for name, value in options.items():
        if value is None:
            continue
        if name in FLOAT_SAMPLING:
            sampling[FLOAT_SAMPLING[name]] = _number(name, value)
        elif name in INT_SAMPLING:
            number = _integer(name, value)
            if name == "seed":
                sampling["seed"] = number if number >= 0 else None  # -1: random (derived from the Message ID)
            elif name == "num_predict":
                until_full = number <= 0  # -1 unlimited, -2 fill the context: both end at the context here
                if not until_full:
                    sampling["max_tokens"] = number
            else:
                sampling[INT_SAMPLING[name]] = number
        elif name == "stop":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise InvalidRequest('option "stop" must be of type array of strings')
            sampling["stop"] = [s for s in value if s]
        elif name in ENGINE_OPTIONS:
            engine[ENGINE_OPTIONS[name]] = _integer(name, value)
        # Anything else (num_gpu, num_keep, mirostat, tfs_z, ...) is ignored, as Ollama ignores unknown keys.
    return OllamaOptions(sampling, engine, until_full)


def _stream_flag(value: Any) -> bool:
    """Ollama streams unless told not to: a missing or null `stream` is true."""
    return flag("stream", value, default=True)


def _model_field(data: Any) -> Any:
    """Ollama's handlers also take the deprecated `name` for `model`."""
    if isinstance(data, dict) and data.get("model") in (None, "") and isinstance(data.get("name"), str):
        data = {**data, "model": data["name"]}
    return data


class OllamaBody(BaseModel):
    """What every Ollama model request names: the model (an ID, `ID:latest`, or a name)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str

    @model_validator(mode="before")
    @classmethod
    def _deprecated_name(cls, data: Any) -> Any:
        return _model_field(data)

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise refuse("model is required")
        return value.strip()


class CallBody(OllamaBody):
    """What /api/generate and /api/chat share: stream (Ollama's default: true), options, and refusals."""

    stream: bool = True
    options: Any = None
    keep_alive: Any = None
    format: Any = None
    think: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    _options: OllamaOptions = PrivateAttr(default_factory=OllamaOptions)

    @field_validator("stream", mode="before")
    @classmethod
    def _stream(cls, value: Any) -> bool:
        return _stream_flag(value)

    @field_validator("keep_alive", mode="before")
    @classmethod
    def _keep_alive(cls, value: Any) -> Any:
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
            isinstance(value, str) and GO_DURATION.match(value.strip()))
        if not ok:
            raise refuse(f"keep_alive: invalid duration {value!r}")
        return value

    @model_validator(mode="after")
    def _supported(self) -> CallBody:
        if self.format not in EMPTY:
            raise refuse("format (JSON or schema output) is not supported by this node: it has no constrained "
                          "sampling; ask for JSON in the prompt instead")
        if self.think not in (None, False):
            raise refuse(f'"{self.model}" does not support thinking')
        if self.logprobs not in (None, False) or self.top_logprobs not in (None, 0):
            raise refuse("logprobs are not supported by this node")
        try:
            self._options = parse_options(self.options)
        except InvalidRequest as exc:
            raise refuse(str(exc)) from None
        return self

    @property
    def mapped_options(self) -> OllamaOptions:
        return self._options


def _no_images(model: str, images: Any) -> None:
    if images not in EMPTY:
        raise refuse(f'"{model}" does not support vision')


class GenerateBody(CallBody):
    """POST /api/generate."""

    prompt: str = ""
    system: str | None = None
    template: Any = None
    raw: bool = False
    suffix: Any = None
    context: Any = None
    images: Any = None

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> Any:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise refuse("prompt must be a string")
        return value

    @field_validator("system", mode="before")
    @classmethod
    def _system(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise refuse("system must be a string")
        return value or None

    @field_validator("raw", mode="before")
    @classmethod
    def _raw(cls, value: Any) -> bool:
        return flag("raw", value, default=False)

    @model_validator(mode="after")
    def _generate_supported(self) -> GenerateBody:
        _no_images(self.model, self.images)
        if self.raw and (self.template not in EMPTY or self.system or self.context not in EMPTY):
            raise refuse("raw mode does not support template, system, or context")
        if self.template not in EMPTY:
            raise refuse("template (a Go template) is not supported by this node: prompts go through the "
                          "model's chat template (or send raw: true with the prompt as the model reads it)")
        if self.suffix not in EMPTY:
            raise refuse(f'"{self.model}" does not support insert')
        if self.context not in EMPTY:
            raise refuse("context is not supported by this node: send the conversation to /api/chat")
        return self


ROLES = ("system", "user", "assistant")


def chat_messages(model: str, messages: list[Any]) -> list[dict[str, str]]:
    """Given Ollama chat messages, return {role, content} messages; refuse images, tools and unknown roles."""
    clean = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise refuse(f"messages[{index}] must be an object")
        role = message.get("role")
        role = role.lower() if isinstance(role, str) else role
        _no_images(model, message.get("images"))
        if role == "tool" or message.get("tool_calls") not in EMPTY or message.get("tool_name") not in EMPTY:
            raise refuse(f'"{model}" does not support tools')
        if role not in ROLES:
            raise refuse(f"messages[{index}].role must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if content is None:
            content = ""  # the Python client drops empty fields
        if not isinstance(content, str):
            raise refuse(f"messages[{index}].content must be a string")
        clean.append({"role": role, "content": content})
    return clean


class OllamaChatBody(CallBody):
    """POST /api/chat."""

    messages: list[dict[str, str]] = []
    tools: Any = None

    @model_validator(mode="before")
    @classmethod
    def _messages(cls, data: Any) -> Any:
        data = _model_field(data)
        if not isinstance(data, dict):
            return data
        messages = data.get("messages")
        if messages is None:
            messages = []
        if not isinstance(messages, list):
            raise refuse("messages must be a list")
        named = data.get("model")
        model = named if isinstance(named, str) else "model"
        if data.get("tools") not in EMPTY:
            raise refuse(f'"{model}" does not support tools')
        return {**data, "messages": chat_messages(model, messages)}


class ShowBody(OllamaBody):
    """POST /api/show."""

    verbose: bool = False


class PullBody(OllamaBody):
    """POST /api/pull (`insecure` means nothing here: every chunk is proven either way)."""

    stream: bool = True

    @field_validator("stream", mode="before")
    @classmethod
    def _stream(cls, value: Any) -> bool:
        return _stream_flag(value)


class CopyBody(BaseModel):
    """POST /api/copy: {source, destination}."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    source: str
    destination: str

    @field_validator("source", "destination", mode="before")
    @classmethod
    def _name(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise refuse(f'{info.field_name} "{value}" is invalid')
        return value.strip()


class EmbedBody(OllamaBody):
    """POST /api/embed ({input}) and the deprecated /api/embeddings ({prompt})."""

    input: Any = None
    prompt: Any = None
    truncate: bool = True
    dimensions: int | None = None
    options: Any = None
    keep_alive: Any = None

    @field_validator("truncate", mode="before")
    @classmethod
    def _truncate(cls, value: Any) -> bool:
        return flag("truncate", value, default=True)

    @field_validator("dimensions", mode="before")
    @classmethod
    def _dimensions(cls, value: Any) -> Any:
        value = whole_number(value)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise refuse("dimensions must be a positive integer")
        return value

    def texts(self) -> list[str]:
        """Return the inputs as a list of strings; 400 `invalid input type` otherwise."""
        value = self.input if self.input is not None else self.prompt
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise InvalidRequest("invalid input type")
