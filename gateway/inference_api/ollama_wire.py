"""Ollama wire shapes: model lists, show, generate and chat objects, NDJSON streams, pull statuses.

Translation only: given what the node knows (catalog entries, GGUF headers, a finished
call), return the JSON an Ollama client expects, plus this node's extras on the final
object of a call (`record {process, message, result}`, `seed`, `fee`), which Ollama's
clients ignore. Durations are integer nanoseconds, timestamps RFC 3339 in UTC.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.errors import ApiError
from inference.errors import InferenceError
from inference.herder.service import RunningCall
from inference.models import ModelEntry, ModelMetadata
from inference.processes import CallResult
from permastore.protocol import b64url

# Ollama's version that this API follows (clients such as Open WebUI compare numeric parts).
API_VERSION = "0.12.0"
NDJSON = "application/x-ndjson"
SHORT_DIGEST = 12  # Ollama's pull status names a layer by the first 12 hex digits of its digest
NANOS_PER_MS = 1_000_000


def timestamp(seconds: float | None = None) -> str:
    """Given Unix seconds (default: now), return RFC 3339 UTC with microseconds and a Z."""
    moment = datetime.fromtimestamp(time.time() if seconds is None else seconds, tz=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def human_number(count: int) -> str:
    """Given a parameter count, return it as Ollama writes parameter_size: 8B, 7.6B, 494.03M, 135K, 999."""
    for unit, size, decimals in (("B", 10**9, 1), ("M", 10**6, 2)):
        if count >= size:
            value = count / size
            return f"{value:.0f}{unit}" if value == int(value) else f"{value:.{decimals}f}{unit}"
    if count >= 1000:
        return f"{count / 1000:.0f}K"
    return str(count)


def digest_of(entry: ModelEntry) -> str:
    """Return a model's digest as Ollama lists it (64 hex): the bytes of its ID, which names it exactly."""
    return b64url.decode(entry.id).hex()


def details_of(tags: dict[str, str]) -> dict[str, Any]:
    """Given a model's tags (from its GGUF header), return Ollama's `details` object."""
    family = tags.get("Model-Architecture", "")
    count = tags.get("Model-Parameter-Count", "")
    return {
        "parent_model": "",
        "format": tags.get("Model-Format", "gguf"),
        "family": family,
        "families": [family] if family else None,
        "parameter_size": human_number(int(count)) if count.isdigit() else "",
        "quantization_level": tags.get("Model-Quantization", ""),
    }


def tag_entry(entry: ModelEntry, name: str, modified: float | None) -> dict[str, Any]:
    """Return one /api/tags entry: a model under one of its names (or `ID:latest`)."""
    return {
        "name": name,
        "model": name,
        "modified_at": timestamp(modified if modified is not None else entry.created_at),
        "size": entry.size,
        "digest": digest_of(entry),
        "details": details_of(entry.tags),
        "model_id": entry.id,
    }


def tags_body(entries: Iterable[ModelEntry], named_at: dict[str, float]) -> dict[str, Any]:
    """Given the trusted models and when each name was recorded, return /api/tags: every name, then every ID."""
    models = []
    for entry in entries:
        models += [tag_entry(entry, name, named_at.get(name)) for name in entry.names]
        models.append(tag_entry(entry, f"{entry.id}:latest", None))
    return {"models": models}


def model_info(fields: dict[str, Any]) -> dict[str, Any]:
    """Given GGUF header fields (arrays left undecoded as None), return show's `model_info` (arrays empty)."""
    return {key: ([] if value is None else value) for key, value in sorted(fields.items())}


def parameters_text(n_ctx: int, penalty_last_n: int, stops: Iterable[str]) -> str:
    """Return show's `parameters`: one `key value` line per default this node applies."""
    lines = [f"num_ctx {n_ctx}", f"repeat_last_n {penalty_last_n}", "temperature 0.8", "top_k 40", "top_p 0.9"]
    lines += [f"stop {json.dumps(stop)}" for stop in stops]
    return "\n".join(lines)


@dataclass(frozen=True)
class ShowFacts:
    """What /api/show says about one model, gathered by the route."""

    entry: ModelEntry
    metadata: ModelMetadata
    fields: dict[str, Any]
    capabilities: list[str]
    n_ctx: int
    penalty_last_n: int
    stops: list[str]


def show_body(facts: ShowFacts) -> dict[str, Any]:
    """Return the /api/show object (`model_info` always present: the Python client requires it)."""
    entry = facts.entry
    return {
        "license": str(facts.fields.get("general.license") or ""),
        "modelfile": f"# Modelfile of permastore model {entry.id}\nFROM {entry.id}\n",
        "parameters": parameters_text(facts.n_ctx, facts.penalty_last_n, facts.stops),
        "template": facts.metadata.chat_template or "",
        "details": details_of(entry.tags),
        "model_info": model_info(facts.fields),
        "capabilities": facts.capabilities,
        "modified_at": timestamp(entry.created_at),
        "model_id": entry.id,
        "names": list(entry.names),
    }


def ps_entry(entry: ModelEntry, name: str, n_ctx: int, expires_at: float) -> dict[str, Any]:
    """Return one /api/ps entry (CPU only: size_vram 0)."""
    return {
        "name": name, "model": name, "size": entry.size, "digest": digest_of(entry),
        "details": details_of(entry.tags), "expires_at": timestamp(expires_at), "size_vram": 0,
        "context_length": n_ctx, "model_id": entry.id,
    }


def line(payload: dict[str, Any]) -> bytes:
    """Return one NDJSON line (compact JSON, one newline, never a blank line)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def loaded_body(kind: str, model: str) -> dict[str, Any]:
    """Return Ollama's answer to a call with nothing to say (no prompt, no messages): the model is loaded."""
    body: dict[str, Any] = {"model": model, "created_at": timestamp(), "done": True, "done_reason": "load"}
    if kind == "chat":
        body["message"] = {"role": "assistant", "content": ""}
    else:
        body["response"] = ""
    return body


@dataclass(frozen=True)
class OllamaCall:
    """A call started for an Ollama request: generate ("generate") or chat ("chat")."""

    running: RunningCall
    model: str  # as the client named it
    kind: str
    started_ns: int  # time.monotonic_ns() when the request arrived


def piece_body(call: OllamaCall, text: str) -> dict[str, Any]:
    """Return one streamed object carrying a piece of text."""
    body: dict[str, Any] = {"model": call.model, "created_at": timestamp(), "done": False}
    if call.kind == "chat":
        body["message"] = {"role": "assistant", "content": text}
    else:
        body["response"] = text
    return body


def final_body(call: OllamaCall, result: CallResult, text: str) -> dict[str, Any]:
    """Return the last object of a call: its text (all of it, or '' after a stream), metrics and records."""
    body = piece_body(call, text)
    timings = result.timings
    body.update(
        done=True,
        done_reason=result.finish_reason if result.finish_reason in ("stop", "length") else "stop",
        total_duration=time.monotonic_ns() - call.started_ns,
        prompt_eval_count=result.prompt_tokens,
        prompt_eval_duration=int(float(timings.get("prompt_ms", 0)) * NANOS_PER_MS),
        eval_count=result.completion_tokens,
        eval_duration=int(float(timings.get("generate_ms", 0)) * NANOS_PER_MS),
        record={"process": result.process_id, "message": result.message_id, "result": result.result_id},
        seed=result.seed,
        fee=call.running.fee,
    )
    return body


async def ndjson_stream(call: OllamaCall) -> AsyncIterator[bytes]:
    """Yield the call as NDJSON: a line per piece of text, then the final line with metrics and records.

    A failure after the stream began (status 200 sent) is one `{"error": ...}` line, which
    Ollama's clients raise as ResponseError. A client that leaves only stops this generator;
    the service still settles the call.
    """
    async for piece in call.running.stream():
        if piece:
            yield line(piece_body(call, piece))
    try:
        result = await call.running.result()
    except InferenceError as exc:
        yield line({"error": str(exc), "record": {"message": call.running.message_id}})
        return
    yield line(final_body(call, result, ""))


def shortened(vectors: list[list[float]], dimensions: int | None) -> list[list[float]]:
    """Given L2-normalised vectors and Ollama's `dimensions`, return them cut to that length and normalised again."""
    if dimensions is None:
        return vectors
    out = []
    for vector in vectors:
        if dimensions > len(vector):
            raise ApiError(400, f"dimensions must be at most {len(vector)} (the model's embedding length)")
        cut = vector[:dimensions]
        norm = math.sqrt(sum(x * x for x in cut)) or 1.0
        out.append([x / norm for x in cut])
    return out


def embed_body(model: str, vectors: list[list[float]], prompt_tokens: int, started_ns: int) -> dict[str, Any]:
    """Return the /api/embed object."""
    body: dict[str, Any] = {"model": model, "embeddings": vectors}
    if vectors:
        body.update(total_duration=time.monotonic_ns() - started_ns, prompt_eval_count=prompt_tokens)
    return body


def pull_status(status: str, digest: str | None = None, total: int | None = None,
                completed: int | None = None) -> dict[str, Any]:
    """Return one pull progress object (Ollama leaves out empty fields, and `completed` while it is 0)."""
    body: dict[str, Any] = {"status": status}
    if digest is not None:
        body["digest"] = f"sha256:{digest}"
    if total:
        body["total"] = total
    if completed:
        body["completed"] = completed
    return body


def pulling(digest: str) -> str:
    """Return the status line of a layer being pulled: `pulling <12 hex>`."""
    return f"pulling {digest[:SHORT_DIGEST]}"
