"""Everything this project takes from llama-cpp-python, private parts included, in one place.

llama-cpp-python is pinned in pyproject.toml to the range this module is tested with
(tests/inference/test_llama_adapter.py). Its private parts used here:

- `llama_cpp._internals.LlamaModel`: a vocab-only model (tokenizer without weights or a
  context), so the server counts a prompt's tokens without loading the model.
- `Llama._model` and `LlamaModel.vocab`: the model under a `Llama`, for the tokenizer's
  BOS rule and the end-of-generation test.

Everything else is the public API. A new release that moves these fails the adapter's test,
not a user's call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import llama_cpp
from llama_cpp._internals import LlamaModel

from inference.native_log import native_log
from inference.sampling import EngineSettings

Llama = llama_cpp.Llama  # a loaded model with its context (the engine holds one)


class Tokenizer(Protocol):
    """What counting and evaluating a prompt needs: a loaded Llama or a vocab-only model."""

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]: ...

    def token_bos(self) -> int: ...


def version() -> str:
    """Return the llama-cpp-python version."""
    return str(llama_cpp.__version__)


def native_version() -> str:
    """Return llama.cpp's own version string ("unknown" for bindings without one)."""
    try:
        value = llama_cpp.llama_version()
    except (AttributeError, TypeError, OSError):
        return "unknown"
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def system_info() -> str:
    """Return llama.cpp's system info line (CPU features it was built for), whitespace squeezed."""
    info = llama_cpp.llama_print_system_info()
    if isinstance(info, bytes):
        info = info.decode("utf-8", errors="replace")
    return " ".join(str(info).split())


def library_dir() -> Path:
    """Return the folder of the native libraries llama-cpp-python loads."""
    return Path(llama_cpp.__file__).parent / "lib"


def llama_params(model_path: Path | str, settings: EngineSettings, embedding: bool = False) -> dict[str, Any]:
    """Given a GGUF path and validated settings, return the keyword arguments of `llama_cpp.Llama`.

    The one place the recorded settings become llama.cpp's parameters: the engine, the
    embedding models and the benchmark's direct baseline all load with exactly these.
    embedding: a context that outputs pooled embeddings (the GGUF's pooling type) instead of logits.
    """
    return {
        "model_path": str(model_path),
        "embedding": embedding,
        "use_mmap": True,  # the store's file is mapped, never copied
        "n_gpu_layers": 0,
        "n_ctx": settings.n_ctx,
        "n_batch": settings.n_batch,
        "n_ubatch": settings.n_ubatch,
        "n_threads": settings.n_threads,
        "n_threads_batch": settings.n_threads,
        "last_n_tokens_size": settings.penalty_last_n,
        "flash_attn": settings.flash_attn,
        "seed": 0,  # every call sets its own
        "verbose": native_log().verbose,  # installs the process's log callback before the first load
    }


def load_llama(model_path: Path | str, settings: EngineSettings, embedding: bool = False) -> llama_cpp.Llama:
    """Given a GGUF path and validated settings, return a loaded Llama (weights memory-mapped)."""
    return llama_cpp.Llama(**llama_params(model_path, settings, embedding))


def embed(llama: llama_cpp.Llama, texts: list[str], truncate: bool) -> tuple[list[list[float]], int]:
    """Given an embedding Llama and texts, return their L2-normalised vectors and the tokens read.

    One text per decode: batched together, the same text's vector differs in its last bits
    with its neighbours, and a text's vector should not depend on what came with it.
    """
    vectors, total = [], 0
    for text in texts:
        vector, count = llama.embed(text, normalize=True, truncate=truncate, return_count=True)
        vectors.append([float(x) for x in vector])
        total += int(count)
    return vectors, total


def load_vocabulary(model_path: Path | str) -> LlamaModel:
    """Given a GGUF path, return a vocab-only model: its tokenizer, no weights, no context.

    Always `verbose=True`: for a LlamaModel that flag only decides whether fds 1 and 2 point
    at /dev/null (and sys.stdout/sys.stderr at a null file) while it loads, which swallows
    whatever any other thread prints meanwhile (the server loads vocabularies on a thread as
    it announces its URL). llama.cpp's own lines are filtered by the process's NativeLog either way.
    """
    native_log()  # the process's log callback is in place before llama.cpp says anything
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    params.use_mmap = True
    return LlamaModel(path_model=str(model_path), params=params, verbose=True)


def _model_of(llama: Any) -> Any:
    """Return the LlamaModel under a Llama (private `_model`), or the vocab-only model itself."""
    return getattr(llama, "_model", llama)


def tokenize_prompt(llama: Any, text: str, special: bool) -> list[int]:
    """Given a Llama or vocab-only model and prompt text, return the tokens a call evaluates.

    BOS is added once when the model asks for it: a template that already writes
    bos_token (llama-2, gemma) does not get a second one.
    """
    model = _model_of(llama)
    tokens = model.tokenize(text.encode("utf-8"), add_bos=False, special=special)
    bos = model.token_bos()
    if llama_cpp.llama_vocab_get_add_bos(model.vocab) and (not tokens or tokens[0] != bos):
        tokens = [bos, *tokens]
    return tokens


def control_tokens_of(llama: Any, texts: tuple[str, ...] | list[str]) -> frozenset[int]:
    """Given a Llama and stop strings, return the IDs of those that are one control token each.

    Control tokens detokenize to nothing, so a stop string such as `<start_of_turn>` can only
    be seen as its token.
    """
    model = _model_of(llama)
    found = set()
    for text in texts:
        ids = model.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if len(ids) == 1 and llama_cpp.llama_vocab_is_control(model.vocab, ids[0]):
            found.add(ids[0])
    return frozenset(found)


def end_of_generation(llama: llama_cpp.Llama) -> Callable[[int], bool]:
    """Given a Llama, return the test "does this token end generation" (EOS, EOT, ...)."""
    vocab = _model_of(llama).vocab
    is_end = getattr(llama_cpp, "llama_vocab_is_eog", None) or llama_cpp.llama_token_is_eog
    return lambda token: bool(is_end(vocab, token))
