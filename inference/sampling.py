"""Settings that shape a call's output: load-time engine settings and per-call sampling.

Pure values with their limits: a Process record carries EngineSettings, a Message carries
SamplingParams, and both are checked the same way wherever they come from (a request, a
record signed by anyone, the CLI).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from inference.errors import InvalidRequest

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

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

    def validate(self) -> EngineSettings:
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

    def to_json(self) -> dict[str, Any]:
        """Return the settings as the JSON object a Process record holds."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> EngineSettings:
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

    def validate(self) -> SamplingParams:
        """Return self with numbers normalised when every value is in range, else raise InvalidRequest."""
        if self.seed is not None:
            checked_seed(self.seed)
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
        return replace(self, stop=stop_strings(self.stop), temperature=floats["temperature"], top_p=floats["top_p"],
                       min_p=floats["min_p"], typical_p=floats["typical_p"], repeat_penalty=floats["repeat_penalty"],
                       frequency_penalty=floats["frequency_penalty"], presence_penalty=floats["presence_penalty"])

    def to_json(self) -> dict[str, Any]:
        """Return the parameters as the JSON object a Message record holds."""
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data

    @classmethod
    def from_json(cls, data: Any) -> SamplingParams:
        """Given a record's or request's sampling object, return validated params."""
        _check_fields(cls, data, "sampling", "sampling parameters")
        data = dict(data)
        if "stop" in data:
            data["stop"] = stop_strings(data["stop"])
        return cls(**data).validate()


def _check_fields(cls: type[DataclassInstance], data: Any, what: str, plural: str) -> None:
    """Raise InvalidRequest unless data is a JSON object whose keys are all fields of the dataclass."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"{what} must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - set(cls.__dataclass_fields__)
    if unknown:
        raise InvalidRequest(f"unknown {plural}: {sorted(unknown)}")


def stop_strings(stop: Any) -> tuple[str, ...]:
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


def checked_seed(seed: Any) -> int:
    """Given a seed, return it when it is a valid call seed, else raise InvalidRequest."""
    if not _is_int(seed) or not 0 <= seed <= MAX_SEED:
        raise InvalidRequest(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}")
    return seed


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MAX_CONTEXT_UNKNOWN = 131072  # the n_ctx ceiling for a model whose header names no context length


def check_machine(settings: EngineSettings, context_length: int | None) -> None:
    """Given valid settings and the model's context length, refuse what this machine or model cannot honour.

    The same check for a spawn request and for a Process record signed by anyone: every
    call of a process beyond it would exhaust the machine or fail in the worker.
    """
    cpus = os.cpu_count() or 1
    if settings.n_threads > cpus:
        raise InvalidRequest(f"n_threads must be at most {cpus} (this machine's CPUs), got {settings.n_threads}")
    limit = context_length or MAX_CONTEXT_UNKNOWN
    if settings.n_ctx > limit:
        raise InvalidRequest(f"n_ctx must be at most {limit} (the model's context length), got {settings.n_ctx}")
