"""llama.cpp engine: one loaded model, deterministic generation, engine identity.

Determinism by construction: every call sets its seed, resets the context (no KV
prefix reuse, so the prompt is always evaluated in the same batches), and uses fixed
n_batch / n_ubatch / thread counts that the Process record carries. What can still
change the arithmetic (library build, CPU features) is the engine identity, which
replay compares before running.
"""

from __future__ import annotations

import atexit
import codecs
import hashlib
import math
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from inference.errors import InvalidRequest, PromptTooLong

# llama.cpp treats this seed as "pick one at random", so it is never a valid call seed.
LLAMA_RANDOM_SEED = 0xFFFFFFFF
MAX_SEED = LLAMA_RANDOM_SEED - 1
# Ceilings that hold on any machine, so a record that passes them can be replayed anywhere
# (machine-specific limits, CPUs and the model's context, are checked when spawning).
MAX_N_CTX = 1 << 20  # llama.cpp allocates the KV cache for all of it up front
MAX_THREADS = 512
MAX_C_INT = (1 << 31) - 1  # llama.cpp takes counts as C int
MAX_STOP_STRINGS = 32  # a chat template adds its own to the caller's
MAX_STOP_CHARS = 256
# CPU flags (from /proc/cpuinfo) whose presence changes which kernels run, hence the bits.
ARITHMETIC_CPU_FLAGS = (
    "pni", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
    "avx512_vnni", "avx512_bf16", "avx512vbmi", "avx_vnni", "amx_int8", "amx_bf16",
    "neon", "asimd", "asimdhp", "asimddp", "sve", "sve2", "i8mm", "bf16",
)


def default_threads() -> int:
    """Return llama-cpp-python's own default: half the CPUs, at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class EngineSettings:
    """Every load-time setting that can change the output; all recorded in the Process."""

    n_ctx: int = 2048
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int = field(default_factory=default_threads)
    penalty_last_n: int = 64
    flash_attn: bool = False

    def validate(self) -> "EngineSettings":
        """Return self when every value is usable, else raise InvalidRequest."""
        ceilings = {"n_ctx": MAX_N_CTX, "n_batch": MAX_N_CTX, "n_ubatch": MAX_N_CTX, "n_threads": MAX_THREADS}
        for name, ceiling in ceilings.items():
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= ceiling:
                raise InvalidRequest(f"{name} must be an integer in 1..{ceiling}, got {value!r}")
        if self.n_ubatch > self.n_batch:
            raise InvalidRequest(f"n_ubatch ({self.n_ubatch}) must not exceed n_batch ({self.n_batch})")
        if not _is_int(self.penalty_last_n) or not 0 <= self.penalty_last_n <= MAX_N_CTX:
            raise InvalidRequest(f"penalty_last_n must be an integer in 0..{MAX_N_CTX}, got {self.penalty_last_n!r}")
        if not isinstance(self.flash_attn, bool):
            raise InvalidRequest(f"flash_attn must be true or false, got {self.flash_attn!r}")
        return self

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EngineSettings":
        """Given a record's settings object, return the settings (unknown keys rejected)."""
        _check_fields(cls, data, "settings", "engine settings")
        return cls(**data).validate()


@dataclass(frozen=True)
class SamplingParams:
    """Every per-call parameter that can change the output; all recorded in the Message."""

    seed: int | None = None
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()

    def validate(self) -> "SamplingParams":
        """Return self with numbers normalised when every value is in range, else raise InvalidRequest."""
        if self.seed is not None:
            _checked_seed(self.seed)
        floats = {}
        for name in ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty",
                     "frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            # Non-finite numbers arrive through JSON too (Python parses NaN and Infinity).
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise InvalidRequest(f"{name} must be a finite number, got {value!r}")
            floats[name] = float(value)
        if floats["temperature"] < 0:
            raise InvalidRequest("temperature must be >= 0")
        if not 0 < floats["top_p"] <= 1:
            raise InvalidRequest("top_p must be in (0, 1]")
        if not 0 <= floats["min_p"] <= 1:
            raise InvalidRequest("min_p must be in [0, 1]")
        if not 0 < floats["typical_p"] <= 1:
            raise InvalidRequest("typical_p must be in (0, 1]")
        if floats["repeat_penalty"] <= 0:
            raise InvalidRequest("repeat_penalty must be > 0")
        if not _is_int(self.top_k) or not 0 <= self.top_k <= MAX_C_INT:
            raise InvalidRequest(f"top_k must be an integer in 0..{MAX_C_INT}, got {self.top_k!r}")
        if not _is_int(self.max_tokens) or not 1 <= self.max_tokens <= MAX_C_INT:
            raise InvalidRequest(f"max_tokens must be an integer in 1..{MAX_C_INT}, got {self.max_tokens!r}")
        return replace(self, stop=stop_strings(self.stop), **floats)

    def to_json(self) -> dict:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "SamplingParams":
        """Given a record's or request's sampling object, return validated params."""
        _check_fields(cls, data, "sampling", "sampling parameters")
        data = dict(data)
        if "stop" in data:
            data["stop"] = stop_strings(data["stop"])
        return cls(**data).validate()


def _check_fields(cls, data, what: str, plural: str) -> None:
    """Raise InvalidRequest unless data is a JSON object whose keys are all fields of the dataclass."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"{what} must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - set(cls.__dataclass_fields__)
    if unknown:
        raise InvalidRequest(f"unknown {plural}: {sorted(unknown)}")


def stop_strings(stop) -> tuple[str, ...]:
    """Given a stop value (None, a string, or a list of strings), return the stop strings; else InvalidRequest."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)):
        raise InvalidRequest(f"stop must be a string or a list of strings, got {type(stop).__name__}")
    if len(stop) > MAX_STOP_STRINGS:
        raise InvalidRequest(f"stop holds at most {MAX_STOP_STRINGS} strings, got {len(stop)}")
    if not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stop):
        raise InvalidRequest(f"stop must be a list of non-empty strings of at most {MAX_STOP_CHARS} characters")
    return tuple(stop)


def _checked_seed(seed) -> int:
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise InvalidRequest(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    return seed


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Generation:
    """What one call produced. `token_ids` are every sampled token, end-of-generation included."""

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    prompt_token_hash: str
    finish_reason: str  # "stop" (end token or stop string) or "length"
    timings: dict

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def token_hash(self) -> str:
        return token_hash(self.token_ids)


def token_hash(token_ids) -> str:
    """Given token IDs, return hex sha256 of them as little-endian uint32s (the recorded output hash)."""
    digest = hashlib.sha256()
    for token in token_ids:
        digest.update(int(token).to_bytes(4, "little"))
    return digest.hexdigest()


def cpu_features() -> list[str]:
    """Return the sorted arithmetic-relevant CPU flags of this machine."""
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags.update(value.split())
                    break
    except OSError:
        pass
    return sorted(flag for flag in flags if flag in ARITHMETIC_CPU_FLAGS)


_identity_cache: dict | None = None


def engine_identity() -> dict:
    """Return what identifies this engine's arithmetic: library versions, build, CPU."""
    global _identity_cache
    if _identity_cache is None:
        import llama_cpp

        system_info = llama_cpp.llama_print_system_info()
        if isinstance(system_info, bytes):
            system_info = system_info.decode("utf-8", errors="replace")
        _identity_cache = {
            "llama_cpp_python": llama_cpp.__version__,
            "llama_cpp_version": _llama_version(llama_cpp),
            "llama_cpp_build_sha256": native_build_hash(),
            "llama_cpp_system_info": " ".join(system_info.split()),
            "machine": platform.machine(),
            "cpu_features": cpu_features(),
        }
    return dict(_identity_cache)


def _llama_version(llama_cpp) -> str:
    try:
        version = llama_cpp.llama_version()
    except (AttributeError, TypeError, OSError):  # older bindings have no llama_version
        return "unknown"
    return version.decode("utf-8", "replace") if isinstance(version, bytes) else str(version)


def native_build_hash() -> str:
    """Return sha256 over the native llama.cpp/ggml libraries llama-cpp-python loads.

    A default build compiles for the building CPU (GGML_NATIVE), so the same version
    can be different machine code; the library bytes name the exact build.
    """
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    digest = hashlib.sha256()
    libraries = sorted(p for p in lib_dir.glob("*") if p.is_file() and not p.is_symlink()) if lib_dir.is_dir() else []
    for library in libraries:
        digest.update(library.name.encode() + b"\0")
        with open(library, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest() if libraries else "unknown"


def identity_differences(recorded: dict, current: dict) -> list[str]:
    """Given two engine identities, return one line per field that differs."""
    lines = []
    for key in sorted(set(recorded) | set(current)):
        if recorded.get(key) != current.get(key):
            lines.append(f"{key}: recorded {recorded.get(key)!r}, here {current.get(key)!r}")
    return lines


def tokenize_prompt(llama, text: str, special: bool) -> list[int]:
    """Given a Llama or vocab-only model and prompt text, return the tokens a call evaluates.

    BOS is added once when the model asks for it: a template that already writes
    bos_token (llama-2, gemma) does not get a second one.
    """
    import llama_cpp

    model = getattr(llama, "_model", llama)
    tokens = model.tokenize(text.encode("utf-8"), add_bos=False, special=special)
    bos = model.token_bos()
    if llama_cpp.llama_vocab_get_add_bos(model.vocab) and (not tokens or tokens[0] != bos):
        tokens = [bos, *tokens]
    return tokens


_vocabularies: dict[str, object] = {}
_vocabularies_lock = threading.Lock()


def vocabulary(model_path) -> object:
    """Given a GGUF path, return a cached vocab-only model (tokenize, token_bos) without weights or context."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    key = str(model_path)
    with _vocabularies_lock:
        if key not in _vocabularies:
            params = llama_cpp.llama_model_default_params()
            params.vocab_only = True
            params.use_mmap = True
            _vocabularies[key] = LlamaModel(path_model=key, params=params, verbose=False)
        return _vocabularies[key]


def close_vocabularies() -> None:
    """Free the cached vocab-only models before interpreter teardown (llama.cpp frees badly then)."""
    with _vocabularies_lock:
        while _vocabularies:
            _, model = _vocabularies.popitem()
            model.close()


atexit.register(close_vocabularies)


class Engine:
    """One llama.cpp model loaded from a file, used by one call at a time."""

    def __init__(self, llama, model_path: Path, settings: EngineSettings, model_id: str | None = None):
        self.llama = llama
        self.model_path = Path(model_path)
        self.settings = settings
        self.model_id = model_id
        self._lock = threading.Lock()  # a llama context is not re-entrant

    @classmethod
    def from_path(cls, model_path, settings: EngineSettings | None = None, model_id: str | None = None) -> "Engine":
        """Given a GGUF file path and settings, return a loaded engine (weights memory-mapped)."""
        import llama_cpp

        settings = (settings or EngineSettings()).validate()
        llama = llama_cpp.Llama(
            model_path=str(model_path),
            use_mmap=True,  # the store's file is mapped, never copied
            n_gpu_layers=0,
            n_ctx=settings.n_ctx,
            n_batch=settings.n_batch,
            n_ubatch=settings.n_ubatch,
            n_threads=settings.n_threads,
            n_threads_batch=settings.n_threads,
            last_n_tokens_size=settings.penalty_last_n,
            flash_attn=settings.flash_attn,
            seed=0,
            verbose=False,
        )
        return cls(llama, Path(model_path), settings, model_id)

    @classmethod
    def load(cls, store, model_id: str, settings: EngineSettings | None = None, source=None) -> "Engine":
        """Given a store and a model ID, verify the weights and return an engine on the store's file."""
        from inference.models import resolve_model

        path = resolve_model(store, model_id, source=source)
        return cls.from_path(path, settings, model_id=model_id)

    def tokenize(self, text: str, special: bool) -> list[int]:
        """Given prompt text, return its tokens with the model's BOS rule applied once."""
        return tokenize_prompt(self.llama, text, special)

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

    def _generate(self, prompt, sampling, special, on_text, seed_later=None) -> Generation:
        import llama_cpp

        started = time.perf_counter()
        llama = self.llama
        prompt_ids = self.tokenize(prompt, special)
        # llama.cpp may round the context up; the recorded setting is the limit either way.
        n_ctx = min(self.settings.n_ctx, llama.n_ctx())
        if len(prompt_ids) >= n_ctx:
            raise PromptTooLong(f"prompt is {len(prompt_ids)} tokens; the context holds {n_ctx}")
        budget = min(sampling.max_tokens, n_ctx - len(prompt_ids))
        vocab = llama._model.vocab
        is_end = getattr(llama_cpp, "llama_vocab_is_eog", None) or llama_cpp.llama_token_is_eog
        text_out = _TextAssembler(sampling.stop, on_text)
        tokens: list[int] = []
        finish_reason = "length"
        first_token_at = None
        # Fresh context and sampler every call: no cached prefix, the call's own seed.
        llama.reset()
        if sampling.seed is None:
            # The same prompt evaluation generate() would do; generate() then finds the
            # whole prompt evaluated and samples from these very logits.
            llama.eval(prompt_ids)
            sampling = replace(sampling, seed=_checked_seed(seed_later()))
        llama.set_seed(sampling.seed)
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
        try:
            for token in generator:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                tokens.append(int(token))
                if is_end(vocab, token):
                    finish_reason = "stop"
                    break
                if text_out.add(llama.detokenize([token])):
                    finish_reason = "stop"
                    break
                if len(tokens) >= budget:
                    break
        finally:
            generator.close()
        text = text_out.finish()
        done = time.perf_counter()
        first_token_at = first_token_at or done
        timings = {
            "prompt_ms": round((first_token_at - started) * 1000, 3),
            "generate_ms": round((done - first_token_at) * 1000, 3),
            "total_ms": round((done - started) * 1000, 3),
        }
        return Generation(text, tuple(tokens), len(prompt_ids), token_hash(prompt_ids), finish_reason, timings)

    def close(self) -> None:
        llama, self.llama = self.llama, None
        if llama is not None:
            llama.close()


class _TextAssembler:
    """Accumulates output bytes as text, cuts at the first stop string, streams safe text."""

    def __init__(self, stop: tuple[str, ...], on_text: Callable[[str], None] | None):
        self.stop = stop
        self.on_text = on_text
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.emitted = 0
        self.stopped = False
        # Text this long at the end could still be the start of a stop string.
        self.hold_back = max((len(s) for s in stop), default=1) - 1

    def add(self, piece: bytes) -> bool:
        """Given the next token's bytes, return True when a stop string has appeared."""
        search_from = max(0, len(self.text) - self.hold_back)
        self.text += self.decoder.decode(piece)
        for stop in self.stop:
            at = self.text.find(stop, search_from)
            if at >= 0:
                self.text = self.text[:at]
                self.stopped = True
                return True
        self._emit(len(self.text) - self.hold_back)
        return False

    def finish(self) -> str:
        """Return the final text (an undecodable tail replaced) after streaming the rest."""
        if not self.stopped:
            self.text += self.decoder.decode(b"", final=True)
        self._emit(len(self.text))
        return self.text

    def _emit(self, upto: int) -> None:
        if self.on_text is not None and upto > self.emitted:
            self.on_text(self.text[self.emitted:upto])
            self.emitted = upto
