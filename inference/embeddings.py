"""Embeddings: a model whose GGUF declares a pooling type embeds text in a herder worker, priced as a call.

    plan = plan_embedding(inference, model_id, texts, truncate)   # checked and counted; nothing charged
    future = start_embedding(service, plan, caller, payment)      # fee reserved, job queued

Which models embed is decided from the GGUF header: `<arch>.pooling_type` 1 (mean),
2 (CLS) or 3 (last token) says the model was made to give one vector per text; a model
without one (a plain chat or completion model) is refused. Vectors are L2-normalised, as
Ollama returns them. An embedding is deterministic for a model and build and has no seed
or sampler, so it is not recorded as a Message and Result; its fee is charged as a call's
(`fee_base + fee_token * tokens`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference import llama_adapter
from inference.context import Inference
from inference.errors import HerderError, InvalidRequest
from inference.fees import needed_fee
from inference.herder.service import CallService
from inference.herder.worker import JobContext
from inference.sampling import EngineSettings

POOLING_TYPES = {1: "mean", 2: "cls", 3: "last"}
EMBEDDERS = "embedders"  # the worker resource holding its embedding contexts
EMBEDDER_CACHE = 1  # embedding contexts kept per worker (besides its generation engines)
EMBED_CTX = 2048  # tokens per input at most (longer inputs are truncated, or refused without truncate)
MAX_INPUTS = 1024


class EmbeddingUnsupported(InvalidRequest):
    """The model's GGUF declares no pooling: it was not made to embed."""


def pooling_type(fields: dict[str, Any]) -> int | None:
    """Given GGUF header fields, return the pooling type (1 mean, 2 CLS, 3 last) when the model embeds, else None."""
    pooling = fields.get(f"{fields.get('general.architecture')}.pooling_type")
    return pooling if isinstance(pooling, int) and pooling in POOLING_TYPES else None


@dataclass(frozen=True)
class EmbeddingPlan:
    """An embedding request checked and counted: the model file, its settings, the texts, their tokens."""

    model_id: str
    model_path: Path
    settings: EngineSettings
    texts: list[str]
    truncate: bool
    prompt_tokens: int


@dataclass(frozen=True)
class Embedding:
    """What an embedding call returns."""

    vectors: list[list[float]]
    prompt_tokens: int
    fee: int


def plan_embedding(inference: Inference, model_id: str, texts: list[str], truncate: bool = True) -> EmbeddingPlan:
    """Given a trusted model and texts, return the planned call; EmbeddingUnsupported or InvalidRequest otherwise."""
    if len(texts) > MAX_INPUTS:
        raise InvalidRequest(f"at most {MAX_INPUTS} inputs per request, got {len(texts)}")
    located = inference.models.get(model_id)
    if pooling_type(inference.models.header_fields(model_id)) is None:  # waits for the verification
        raise EmbeddingUnsupported(f"model {model_id} does not support embedding: its GGUF declares no pooling type")
    n_ctx = min(EMBED_CTX, located.metadata.context_length or EMBED_CTX)
    # One input is evaluated in one batch: the whole sequence is pooled at once.
    settings = EngineSettings(n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx).validate()
    counts = [inference.vocabularies.count_tokens(located.path, text, False) for text in texts]
    if not truncate and any(count > n_ctx for count in counts):
        raise InvalidRequest(f"the input length exceeds the context length ({n_ctx} tokens)")
    return EmbeddingPlan(model_id, located.path, settings, list(texts), truncate,
                         sum(min(count, n_ctx) for count in counts))


class EmbedderCache:
    """Embedding contexts of one worker, keyed by file and settings; the least recently used go first."""

    def __init__(self, size: int = EMBEDDER_CACHE):
        self.size = size
        self._contexts: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_path: str, settings: EngineSettings) -> Any:
        key = (model_path, tuple(sorted(settings.to_json().items())))
        with self._lock:
            llama = self._contexts.get(key)
            if llama is None:
                llama = llama_adapter.load_llama(model_path, settings, embedding=True)
                self._contexts[key] = llama
                while len(self._contexts) > self.size:
                    self._contexts.popitem(last=False)[1].close()
            self._contexts.move_to_end(key)
            return llama

    def close(self) -> None:
        with self._lock:
            while self._contexts:
                self._contexts.popitem()[1].close()


def embed_job(payload: dict[str, Any], job: JobContext) -> dict[str, Any]:
    """Herder job: embed {model_path, settings, texts, truncate}; return {embeddings, prompt_tokens}."""
    llama = job.resource(EMBEDDERS, EmbedderCache).get(payload["model_path"],
                                                       EngineSettings.from_json(payload["settings"]))
    vectors, count = llama_adapter.embed(llama, payload["texts"], payload["truncate"])
    return {"embeddings": vectors, "prompt_tokens": count}


def start_embedding(service: CallService, plan: EmbeddingPlan, caller: str, payment: int | None) -> Future[Embedding]:
    """Given a planned embedding, reserve its fee and queue it; the future settles with the fee charged or refunded."""
    needed = needed_fee(service.settings.fees, plan.prompt_tokens, 0)
    fee, multiplier, reservation = service.reserve_fee(needed, caller, payment)
    done: Future[Embedding] = Future()

    def settle(kind: str, value: Any) -> None:  # on the pool's thread, once the job has ended
        if kind == "done":
            service.charge(reservation)
            done.set_result(Embedding(value["embeddings"], value["prompt_tokens"], fee))
        elif kind == "error":
            service.refund(reservation)
            done.set_exception(value if isinstance(value, HerderError) else HerderError(str(value)))

    payload = {"model_path": str(plan.model_path), "settings": plan.settings.to_json(), "texts": plan.texts,
               "truncate": plan.truncate}
    try:
        service.pool.submit(embed_job, payload, multiplier, listener=settle)
    except BaseException:
        service.refund(reservation)
        raise
    return done
