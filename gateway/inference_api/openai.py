"""OpenAI wire shapes: completion and chat completion objects, stream chunks as server-sent events, models.

Translation only: given what a call produced, return the JSON an OpenAI client expects,
plus this node's extras (`record {process, message, result}`, `fee`, `seed`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from inference.errors import InferenceError
from inference.herder.service import RunningCall
from inference.models import ModelEntry
from inference.processes import CallResult

SSE_DONE = "data: [DONE]\n\n"


@dataclass(frozen=True)
class OpenCall:
    """A call started for an OpenAI request, with what its response needs to say."""

    running: RunningCall
    model: str
    kind: str  # "chat" or "text"
    created: int

    @property
    def id(self) -> str:
        return ("chatcmpl-" if self.kind == "chat" else "cmpl-") + self.running.message_id

    @property
    def object(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"


def record_of(result: CallResult) -> dict[str, str]:
    return {"process": result.process_id, "message": result.message_id, "result": result.result_id}


def usage_of(result: CallResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def finish_reason(reason: str) -> str:
    return reason if reason in ("stop", "length") else "stop"


def completion_body(call: OpenCall, result: CallResult) -> dict[str, Any]:
    """Given a finished call, return the OpenAI response object (chat or text)."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason(result.finish_reason), "logprobs": None}
    if call.kind == "chat":
        choice["message"] = {"role": "assistant", "content": result.text}
    else:
        choice["text"] = result.text
    return {
        "id": call.id, "object": call.object, "created": call.created, "model": call.model,
        "choices": [choice], "usage": usage_of(result), "record": record_of(result),
        "fee": call.running.fee, "seed": result.seed,
    }


def chunk(call: OpenCall, text: str | None, finish: str | None = None, first: bool = False) -> dict[str, Any]:
    """Return one OpenAI stream chunk."""
    choice: dict[str, Any]
    if call.kind == "chat":
        delta: dict[str, Any] = {"role": "assistant", "content": text or ""} if first else {}
        if text and not first:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        kind = "text_completion"
    return {"id": call.id, "object": kind, "created": call.created, "model": call.model, "choices": [choice]}


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def stream_events(call: OpenCall) -> AsyncIterator[str]:
    """Yield the call as server-sent events: chunks, a last chunk with the record, [DONE].

    A client that leaves mid-stream only stops this generator; the service still settles
    the call (Result written, fee charged or refunded).
    """
    if call.kind == "chat":
        yield sse(chunk(call, "", first=True))
    async for piece in call.running.stream():
        yield sse(chunk(call, piece))
    try:
        result = await call.running.result()
    except InferenceError as exc:
        # The stream has begun (status 200 is sent): the failure travels as an error event,
        # which OpenAI clients raise as an APIError.
        yield sse({"error": {"message": str(exc), "type": "herder_error", "code": exc.status},
                   "record": {"message": call.running.message_id}})
        yield SSE_DONE
        return
    last = chunk(call, None, finish=finish_reason(result.finish_reason))
    last.update(usage=usage_of(result), record=record_of(result), fee=call.running.fee, seed=result.seed)
    yield sse(last)
    yield SSE_DONE


def model_object(entry: ModelEntry) -> dict[str, Any]:
    """Given a stored model, return its OpenAI model object (with its size and tags)."""
    return {
        "id": entry.id,
        "object": "model",
        "created": 0,
        "owned_by": entry.tags.get("Model-Name", "permastore"),
        "size": entry.size,
        "tags": entry.tags,
        "names": list(entry.names),
    }
