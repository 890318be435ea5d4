"""llama.cpp engine: one loaded model, deterministic generation; a bounded cache of loaded engines.

Determinism by construction: every call sets its seed, resets the context (no KV
prefix reuse, so the prompt is always evaluated in the same batches), and uses fixed
n_batch / n_ubatch / thread counts that the Process record carries. What can still
change the arithmetic (library build, CPU features) is the engine identity
(`inference.identity`), which replay compares before running.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from inference import llama_adapter
from inference.errors import InvalidRequest, PromptTooLong
from inference.generation import Generation, TextAssembler, token_hash
from inference.sampling import EngineSettings, SamplingParams, checked_seed

ENGINE_CACHE_SIZE = 2  # models kept loaded per OS process (each maps its weights once)


class Engine:
    """One llama.cpp model loaded from a file, used by one call at a time."""

    def __init__(self, llama: llama_adapter.Llama, model_path: Path, settings: EngineSettings, model_id: str | None = None):
        self.llama: llama_adapter.Llama | None = llama  # None once closed
        self.model_path = Path(model_path)
        self.settings = settings
        self.model_id = model_id
        self._lock = threading.Lock()  # a llama context is not re-entrant

    @classmethod
    def from_path(cls, model_path: Path | str, settings: EngineSettings | None = None,
                  model_id: str | None = None) -> Engine:
        """Given a GGUF file path and settings, return a loaded engine (weights memory-mapped)."""
        settings = (settings or EngineSettings()).validate()
        return cls(llama_adapter.load_llama(model_path, settings), Path(model_path), settings, model_id)

    def tokenize(self, text: str, special: bool) -> list[int]:
        """Given prompt text, return its tokens with the model's BOS rule applied once."""
        return llama_adapter.tokenize_prompt(self.llama, text, special)

    def piece(self, token: int) -> str | None:
        """Given a token ID, return its text (None when the vocabulary has no such token)."""
        try:
            return self._loaded().detokenize([token]).decode("utf-8", errors="replace")
        except Exception:  # noqa: BLE001 - a tampered token ID may be outside the vocabulary
            return None

    def generate(
        self,
        prompt: str,
        sampling: SamplingParams,
        special: bool = False,
        on_text: Callable[[str], None] | None = None,
        seed_later: Callable[[], int] | None = None,
    ) -> Generation:
        """Given a rendered prompt and sampling params with a seed, return the generation.

        `special` parses control-token text (chat templates) as tokens. `on_text` gets
        the output text as it grows (never a partial stop string). Without a seed in
        `sampling`, `seed_later()` is asked for it once the prompt is evaluated (the
        prompt does not depend on it), so a seed still being derived costs no time.
        """
        if sampling.seed is None and seed_later is None:
            raise InvalidRequest("a call needs a seed; derive one before generating")
        sampling = sampling.validate()
        with self._lock:
            return self._generate(prompt, sampling, special, on_text, seed_later)

    def _generate(self, prompt: str, sampling: SamplingParams, special: bool,
                  on_text: Callable[[str], None] | None, seed_later: Callable[[], int] | None) -> Generation:
        started = time.perf_counter()
        llama = self._loaded()
        prompt_ids = self.tokenize(prompt, special)
        # llama.cpp may round the context up; the recorded setting is the limit either way.
        n_ctx = min(self.settings.n_ctx, llama.n_ctx())
        if len(prompt_ids) >= n_ctx:
            raise PromptTooLong(f"prompt is {len(prompt_ids)} tokens; the context holds {n_ctx}")
        budget = min(sampling.max_tokens, n_ctx - len(prompt_ids))
        # Fresh context and sampler every call: no cached prefix, the call's own seed.
        llama.reset()
        seed = sampling.seed
        if seed is None:
            assert seed_later is not None  # generate() refuses a call with neither
            # The same prompt evaluation generate() would do; generate() then finds the
            # whole prompt evaluated and samples from these very logits.
            llama.eval(prompt_ids)
            seed = checked_seed(seed_later())
            sampling = replace(sampling, seed=seed)
        llama.set_seed(seed)
        text_out = TextAssembler(sampling.stop, on_text)
        tokens, finish_reason, first_token_at = self._sample(prompt_ids, sampling, budget, text_out)
        text = text_out.finish()
        done = time.perf_counter()
        first_token_at = first_token_at or done
        timings = {
            "prompt_ms": round((first_token_at - started) * 1000, 3),
            "generate_ms": round((done - first_token_at) * 1000, 3),
            "total_ms": round((done - started) * 1000, 3),
        }
        return Generation(text, tuple(tokens), len(prompt_ids), token_hash(prompt_ids), finish_reason, timings)

    def _sample(self, prompt_ids: list[int], sampling: SamplingParams, budget: int,
                text_out: TextAssembler) -> tuple[list[int], str, float | None]:
        """Run the sampler; return (token IDs, finish reason, when the first token came)."""
        llama = self._loaded()
        is_end = llama_adapter.end_of_generation(llama)
        stop_tokens = llama_adapter.control_tokens_of(llama, sampling.stop)  # they detokenize to ""
        generator = llama.generate(
            prompt_ids,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            min_p=sampling.min_p,
            typical_p=sampling.typical_p,
            temp=sampling.temperature,
            repeat_penalty=sampling.repeat_penalty,
            frequency_penalty=sampling.frequency_penalty,
            presence_penalty=sampling.presence_penalty,
            reset=True,
        )
        tokens: list[int] = []
        finish_reason, first_token_at = "length", None
        try:
            for token in generator:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                tokens.append(int(token))
                if is_end(token) or token in stop_tokens or text_out.add(llama.detokenize([token])):
                    finish_reason = "stop"
                    break
                if len(tokens) >= budget:
                    break
        finally:
            generator.close()
        return tokens, finish_reason, first_token_at

    def _loaded(self) -> llama_adapter.Llama:
        """Return the loaded Llama; raise when the engine was closed (its model is freed)."""
        if self.llama is None:
            raise RuntimeError(f"the engine of {self.model_path.name} is closed")
        return self.llama

    def close(self) -> None:
        """Free the model and its context, once a generation running on it has ended."""
        with self._lock:  # an engine evicted from a shared cache may still be generating on another thread
            llama, self.llama = self.llama, None
        if llama is not None:
            llama.close()


class EngineCache:
    """Loaded engines of one OS process, keyed by file and settings; the least recently used go first."""

    def __init__(self, size: int = ENGINE_CACHE_SIZE):
        self.size = size
        self._engines: OrderedDict[tuple, Engine] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model_path: Path | str, settings: EngineSettings) -> Engine:
        """Return a loaded engine for this file and settings, reusing one already loaded."""
        key = (str(model_path), tuple(sorted(settings.to_json().items())))
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
            engine = Engine.from_path(model_path, settings)
            self._engines[key] = engine
            while len(self._engines) > self.size:
                _, old = self._engines.popitem(last=False)
                old.close()
            return engine

    def close(self) -> None:
        """Free every engine (llama.cpp frees badly during interpreter teardown, so do it first)."""
        with self._lock:
            while self._engines:
                _, engine = self._engines.popitem()
                engine.close()
