"""What the inference, Ollama and AO request bodies accept, as JSON Schema for `/openapi.json`.

The typed models in `schemas` and `ollama_bodies` are the validators; their fields are
mostly `Any` with checks in code, so pydantic cannot derive a truthful schema from them.
These schemas say the same limits in JSON Schema, so a client (or schemathesis) that sends
a body matching them is not refused with 400 for its shape. Keep the two in step: the
schemathesis test in tests/gateway/test_openapi.py fails when a schema allows what a
validator refuses.
"""

from __future__ import annotations

from typing import Any

from gateway.inference_api.ollama_bodies import ENGINE_OPTIONS, FLOAT_SAMPLING, GO_DURATION
from gateway.openapi import ID_PATTERN, Responses
from inference.chat import ROLES, template_names
from inference.credits import MAX_AMOUNT
from inference.sampling import MAX_C_INT, MAX_N_CTX, MAX_SEED, MAX_STOP_CHARS, MAX_STOP_STRINGS, MAX_THREADS

MONEY = "a JSON integer: money is never a float, so 1.0 is refused (JSON Schema cannot say so)"
NON_BLANK = {"type": "string", "pattern": r"\S"}
FINITE = {"type": "number"}
STOP = {"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS},
    {"type": "array", "maxItems": MAX_STOP_STRINGS, "items": {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}},
]}
SAMPLING: dict[str, Any] = {
    "temperature": {**FINITE, "minimum": 0},
    "top_k": {"type": "integer", "minimum": 0, "maximum": MAX_C_INT},
    "top_p": {**FINITE, "exclusiveMinimum": 0, "maximum": 1},
    "min_p": {**FINITE, "minimum": 0, "maximum": 1},
    "typical_p": {**FINITE, "exclusiveMinimum": 0, "maximum": 1},
    "repeat_penalty": {**FINITE, "exclusiveMinimum": 0},
    "frequency_penalty": FINITE,
    "presence_penalty": FINITE,
    "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
    "stop": STOP,
    "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_C_INT},
    "max_completion_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_C_INT},
    "payment": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "description": MONEY},
}
MESSAGES = {"type": "array", "minItems": 1, "items": {
    "type": "object", "required": ["role", "content"],
    "properties": {"role": {"enum": list(ROLES)}, "content": {"type": "string"}}}}
TEMPLATE = {"enum": [*template_names(), None]}
EMPTY: dict[str, Any] = {"enum": [None, False, [], {}]}  # what a field this node cannot honour may be
UNSUPPORTED = ("tools", "tool_choice", "functions", "function_call", "response_format", "logit_bias", "suffix",
               "best_of", "echo")
OPENAI_CALL: dict[str, Any] = {
    **SAMPLING, "model": {"type": "string", "minLength": 1}, "stream": {"type": ["boolean", "null"]},
    "n": {"const": 1}, "process": {"type": "string", "pattern": ID_PATTERN}, "logprobs": {"enum": [None, False]}, **dict.fromkeys(UNSUPPORTED, EMPTY),
}


OLLAMA_EMPTY: dict[str, Any] = {"enum": [None, False, "", [], {}]}  # what Ollama's unsupported fields may be
COUNT = {"type": "integer", "minimum": 1}
ENGINE = {"n_ctx": {**COUNT, "maximum": MAX_N_CTX}, "n_threads": {**COUNT, "maximum": MAX_THREADS},
          "penalty_last_n": {"type": "integer", "minimum": 0, "maximum": MAX_N_CTX},
          "n_batch": {**COUNT, "minimum": 512, "maximum": MAX_N_CTX}}  # n_ubatch (512) must not exceed it


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


OLLAMA_OPTIONS = {"type": ["object", "null"], "properties": {
    **{name: _nullable(SAMPLING[field]) for name, field in FLOAT_SAMPLING.items()},
    "top_k": _nullable(SAMPLING["top_k"]), "seed": {"type": ["integer", "null"], "maximum": MAX_SEED},
    "num_predict": {"type": ["integer", "null"], "maximum": MAX_C_INT},
    **{name: _nullable(ENGINE[field]) for name, field in ENGINE_OPTIONS.items()},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]}}}


def _object(properties: dict[str, Any], required: list[str], extra: bool) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": extra}


def completion() -> dict[str, Any]:
    """POST /v1/completions: a model by ID or name and a prompt (the `process` form is documented, not generated)."""
    return _object({**OPENAI_CALL, "prompt": {"type": "string"}}, ["model", "prompt"], True)


def chat() -> dict[str, Any]:
    return _object({**OPENAI_CALL, "messages": MESSAGES, "chat_template": TEMPLATE}, ["model", "messages"], True)


def message() -> dict[str, Any]:
    """POST /processes/{id}/messages: exactly one of prompt or messages, and sampling."""
    return {"oneOf": [_object({**SAMPLING, "prompt": {"type": "string"}}, ["prompt"], False),
                      _object({**SAMPLING, "messages": MESSAGES}, ["messages"], False)]}


def spawn() -> dict[str, Any]:
    settings = _object({**ENGINE, "n_ubatch": {**COUNT, "maximum": 512}, "flash_attn": {"type": "boolean"}}, [], False)
    return _object({"model": {"type": "string", "minLength": 1}, "settings": _nullable(settings),
                    "system_prompt": {"type": ["string", "null"]}, "chat_template": TEMPLATE}, ["model"], False)


def credit() -> dict[str, Any]:
    return _object({"amount": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT, "description": MONEY}},
                   ["amount"], False)


def ollama(kind: str) -> dict[str, Any]:
    """Given an Ollama route's body kind, return its schema (unknown fields are ignored, as Ollama does)."""
    flag = {"type": ["boolean", "null"]}
    call = {"stream": flag, "options": OLLAMA_OPTIONS, "keep_alive": {"type": ["number", "string", "null"],
            "pattern": GO_DURATION.pattern}, "format": OLLAMA_EMPTY,
            "think": {"enum": [None, False]}, "logprobs": {"enum": [None, False]}, "top_logprobs": {"enum": [None, 0]}}
    fields: dict[str, dict[str, Any]] = {
        "show": {"verbose": {"type": "boolean"}},
        "pull": {"stream": flag},
        "delete": {},
        "generate": {**call, "prompt": {"type": "string"}, "system": {"type": ["string", "null"]},
                     "raw": {"enum": [False, None]}, **dict.fromkeys(("template", "suffix", "context", "images"), OLLAMA_EMPTY)},
        "chat": {**call, "messages": {**MESSAGES, "minItems": 0}, "tools": OLLAMA_EMPTY},
        "embed": {"input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                  "truncate": flag, "dimensions": {"type": "integer", "minimum": 1}},
    }
    if kind == "copy":
        return _object({"source": NON_BLANK, "destination": NON_BLANK}, ["source", "destination"], True)
    return _object({"model": NON_BLANK, **fields[kind]}, ["model"], True)


OPENAI_ERROR = {"type": "object", "required": ["error", "status"], "properties": {
    "error": {"type": "object", "required": ["message", "type", "param", "code"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}},
    "status": {"type": "integer"}}}


def ao_dry_run() -> dict[str, Any]:
    """POST /ao/cu/dry-run: an unsigned AO message as aoconnect sends it (`Target`, if given, is the process-id)."""
    tag = _object({"name": {"type": "string"}, "value": {"type": "string"}}, ["name", "value"], True)
    text = {"type": "string"}
    return _object({"Id": text, "Owner": text, "Anchor": text, "Data": {}, "Tags": {"type": "array", "items": tag},
                    "Target": {**text, "pattern": ID_PATTERN, "description": "the process-id query value"}}, [], True)


def openai_answer(kind: str) -> Responses:
    """Given "chat" or "text", return the 200 response of that OpenAI route: the object, or its event stream."""
    usage = _object({name: {"type": "integer", "minimum": 0} for name in ("prompt_tokens", "completion_tokens",
                                                                          "total_tokens")}, [], True)
    output = ({"message": _object({"role": {"const": "assistant"}, "content": {"type": "string"}}, ["role", "content"], True)}
              if kind == "chat" else {"text": {"type": "string"}})
    choice = _object({"index": {"const": 0}, "finish_reason": {"type": ["string", "null"]}, **output},
                     ["index", "finish_reason", *output], True)
    answer = _object({"id": {"type": "string"}, "object": {"const": "chat.completion" if kind == "chat" else "text_completion"},
                      "created": {"type": "integer"}, "model": {"type": "string"},
                      "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": choice}, "usage": usage},
                     ["id", "object", "created", "model", "choices", "usage"], True)
    return {200: {"description": "The completion, or with stream: true server-sent events (`data: {chunk}`, "
                                 "then `data: [DONE]`)",
                  "content": {"application/json": {"schema": answer}, "text/event-stream": {"schema": {"type": "string"}}}}}
