"""Request bodies of the inference routes as typed models, validated before anything is reserved,
signed or stored.

OpenAI bodies ignore fields they do not name, on purpose: OpenAI clients send more than a
node needs (`user`, `stream_options`, ...). Fields that would change what is generated but
that this node cannot honour are named, and refused unless empty. The node's own bodies
(processes, messages, credits) refuse unknown fields: a misspelt setting is an error.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gateway.errors import ApiError
from inference.chat import template_names
from inference.credits import MAX_AMOUNT
from inference.errors import InvalidRequest
from inference.sampling import EngineSettings, SamplingParams

SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty",
                   "frequency_penalty", "presence_penalty", "seed", "stop")
UNSUPPORTED_FIELDS = ("tools", "tool_choice", "functions", "function_call", "response_format",
                      "logit_bias", "suffix", "best_of", "echo")
EMPTY: tuple[object, ...] = (None, False, [], {})


def refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError("invalid_field", message)


def parse_body(model: type[BaseModel], body: dict[str, Any]) -> Any:
    """Given a body model and the JSON body, return the validated body; 400 with the first reason."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ApiError(400, _reason(exc)) from None


def _reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    if err["type"] == "invalid_field":
        return str(err["msg"])
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


EXACT_FLOAT_INTEGERS = 2**53  # beyond this a JSON float no longer names one integer exactly
COUNT_FIELDS = ("top_k", "seed", "max_tokens", "max_completion_tokens")
ENGINE_COUNT_FIELDS = ("n_ctx", "n_batch", "n_ubatch", "n_threads", "penalty_last_n")


def whole_number(value: Any) -> Any:
    """Given a JSON value, return a float that is exactly a whole number (`497.0`) as that int; others unchanged.

    JSON Schema's `integer` includes 497.0 and some clients serialise counts as floats. Money
    (payment, credit amounts) is never converted: it must be a JSON integer.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) <= EXACT_FLOAT_INTEGERS:
        return int(value)
    return value


def flag(name: str, value: Any, default: bool) -> bool:
    """Given a JSON boolean field's value, return it (default when null or missing); refuse any non-boolean."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise refuse(f"{name} must be true or false")
    return value


def _whole_numbers(values: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: whole_number(value) if name in names else value for name, value in values.items()}


def _payment_value(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise refuse("payment must be a non-negative integer")
    return value


class SamplingBody(BaseModel):
    """The sampling fields of a call (OpenAI names, plus llama.cpp's), turned into SamplingParams."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    temperature: Any = None
    top_k: Any = None
    top_p: Any = None
    min_p: Any = None
    typical_p: Any = None
    repeat_penalty: Any = None
    frequency_penalty: Any = None
    presence_penalty: Any = None
    seed: Any = None
    stop: Any = None
    max_tokens: Any = None
    max_completion_tokens: Any = None
    payment: int | None = None
    _sampling: SamplingParams = PrivateAttr()

    @field_validator("payment", mode="before")
    @classmethod
    def _payment(cls, value: Any) -> int | None:
        return _payment_value(value)

    @field_validator("stop", mode="before")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(s, str) for s in value)
        ):
            raise refuse("stop must be a string or a list of strings")
        return value

    def model_post_init(self, context: Any) -> None:
        values = {name: getattr(self, name) for name in SAMPLING_FIELDS if getattr(self, name) is not None}
        max_tokens = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        if max_tokens is not None:
            values["max_tokens"] = max_tokens
        values = _whole_numbers(values, COUNT_FIELDS)
        self._sampling = SamplingParams.from_json(values)  # InvalidRequest: a 400 before anything happens

    @property
    def sampling(self) -> SamplingParams:
        return self._sampling


class OpenAICallBody(SamplingBody):
    """What both OpenAI completion routes take besides the prompt."""

    model: str | None = None
    process: str | None = None
    stream: bool = False
    n: Any = 1
    logprobs: Any = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    logit_bias: Any = None
    suffix: Any = None
    best_of: Any = None
    echo: Any = None

    @model_validator(mode="before")
    @classmethod
    def _supported(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in UNSUPPORTED_FIELDS:
            if data.get(name) not in EMPTY:
                raise refuse(f"{name} is not supported by this node")
        if data.get("n", 1) != 1:
            raise refuse("n must be 1: one call, one recorded result")
        if data.get("logprobs") not in (None, False):
            raise refuse("logprobs are not supported by this node")
        return data

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not value):
            raise refuse("model is required: a model ID (GET /v1/models lists them)")
        return value

    @field_validator("process", mode="before")
    @classmethod
    def _process(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise refuse("process must be a process ID string")
        return value

    @field_validator("stream", mode="before")
    @classmethod
    def _stream(cls, value: Any) -> bool:
        return flag("stream", value, default=False)

    @model_validator(mode="after")
    def _model_or_process(self) -> OpenAICallBody:
        if self.process is None and self.model is None:
            raise refuse("model is required: a model ID (GET /v1/models lists them)")
        return self


class CompletionBody(OpenAICallBody):
    """POST /v1/completions."""

    prompt: str

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> str:
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            value = value[0]
        if not isinstance(value, str):
            raise refuse("prompt must be a string")
        return value


def _messages(value: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise refuse("messages must be a non-empty list")
    return value


class ChatBody(OpenAICallBody):
    """POST /v1/chat/completions (each message is checked by inference.chat.validate_messages).

    `chat_template` (this node's extra) names the template of the process the call goes to.
    """

    messages: list[Any]
    chat_template: str | None = None

    @field_validator("messages", mode="before")
    @classmethod
    def _check_messages(cls, value: Any) -> list[Any]:
        return _messages(value)

    @field_validator("chat_template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> Any:
        return _template_name(value)


class MessageBody(SamplingBody):
    """POST /processes/{pid}/messages: a prompt or chat messages, sampling, payment."""

    prompt: str | None = None
    messages: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_input(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("messages" in data) == ("prompt" in data):
            raise refuse("give exactly one of prompt or messages")
        return data

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise refuse("prompt must be a string")
        return value

    @field_validator("messages", mode="before")
    @classmethod
    def _check_messages(cls, value: Any) -> list[Any]:
        return _messages(value)


class SpawnBody(BaseModel):
    """POST /processes: {model, settings?, system_prompt?, chat_template?}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    settings: EngineSettings | None = None
    system_prompt: str | None = None
    chat_template: str | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value:
            raise refuse("model is required: a model ID (GET /v1/models lists them)")
        return value

    @field_validator("settings", mode="before")
    @classmethod
    def _settings(cls, value: Any) -> EngineSettings | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise refuse("settings must be an object")
        try:
            return EngineSettings.from_json(_whole_numbers(value, ENGINE_COUNT_FIELDS))
        except InvalidRequest as exc:
            raise refuse(str(exc)) from None

    @field_validator("system_prompt", mode="before")
    @classmethod
    def _system(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise refuse("system_prompt must be a string")
        return value

    @field_validator("chat_template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> Any:
        return _template_name(value)


def _template_name(value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise refuse(f"chat template must be a name, one of {', '.join(template_names())}")
    return value


class CreditBody(BaseModel):
    """POST /credits/{address}: {"amount": N}, a positive integer the ledger can hold (JSON floats refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount: int = Field(strict=True, gt=0, le=MAX_AMOUNT)

    @field_validator("amount", mode="before")
    @classmethod
    def _integer(cls, value: Any) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise refuse("amount must be a positive integer")
        if not 0 < value <= MAX_AMOUNT:
            raise refuse(f"amount must be a positive integer of at most {MAX_AMOUNT}")
        return value


def header_payment(value: str | None) -> int | None:
    """Given the X-Payment header, return its amount (None when absent); 400 when it is not one."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 20):
        raise ApiError(400, "payment must be a non-negative integer")
    return int(value)


ERROR_BODY = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["error", "status"],
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}}}}


def openapi_errors(*statuses: int, body: dict[str, Any] | None = None) -> dict[int | str, dict[str, Any]]:
    """Given the statuses a route answers besides 200 (and the error schema, the node's by default),
    return their OpenAPI responses."""
    content = ERROR_BODY if body is None else {"content": {"application/json": {"schema": body}}}
    return {status: {"description": "refused, with a reason", **content} for status in statuses}


def openapi_body(model: type[BaseModel], signed: bool = True, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Given a body model (and the JSON Schema of what it accepts: gateway.inference_api.body_schemas),
    return its OpenAPI requestBody (JSON, or a signed ANS-104 item holding it)."""
    if schema is None:
        schema = {"type": "object", "properties": {name: {} for name in model.model_fields}}
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if signed:
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}
