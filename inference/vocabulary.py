"""Vocab-only models by file: the server counts a prompt's tokens without loading weights."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

from inference import llama_adapter

VOCABULARY_CACHE_SIZE = 8  # a 262k-token vocabulary is tens of MB; keep the few in use


class Vocabularies:
    """Vocab-only models of one owner (an Inference context), least recently used closed first."""

    def __init__(self, size: int = VOCABULARY_CACHE_SIZE):
        self.size = size
        self._models: OrderedDict[str, llama_adapter.LlamaModel] = OrderedDict()
        self._lock = threading.Lock()

    def count_tokens(self, model_path: Path | str, text: str, special: bool) -> int:
        """Given a GGUF path and prompt text, return how many tokens a call evaluates."""
        with self._lock:  # the tokenizer is used under the lock: closing one must wait for it
            model = self._get(str(model_path))
            return len(llama_adapter.tokenize_prompt(model, text, special))

    def _get(self, key: str) -> llama_adapter.LlamaModel:
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        model = llama_adapter.load_vocabulary(key)
        self._models[key] = model
        while len(self._models) > self.size:
            _, old = self._models.popitem(last=False)
            old.close()
        return model

    def close(self) -> None:
        """Free every vocab-only model (before interpreter teardown: llama.cpp frees badly then)."""
        with self._lock:
            while self._models:
                _, model = self._models.popitem()
                model.close()
