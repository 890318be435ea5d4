"""Running a prepared call on llama.cpp: what a worker process does (and the CLI, in its own process).

No store access here: a PreparedCall carries the model file, settings, prompt and
sampling. Herder jobs (`job(payload, context)`) keep their loaded engines as the
worker's resource, so a worker loads each model once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inference import records
from inference.engine import EngineCache
from inference.generation import Generation
from inference.herder.worker import JobContext
from inference.processes import PreparedCall
from inference.sampling import EngineSettings, SamplingParams

ENGINES = "engines"  # the worker resource holding its loaded engines


def execute(call: PreparedCall, engines: EngineCache, on_text: Callable[[str], None] | None = None,
            message_id_later: Callable[[], str] | None = None) -> Generation:
    """Given a prepared call, run it on llama.cpp and return the generation.

    A call whose Message is still being signed has no seed and no message_id yet:
    `message_id_later()` gives the ID once the prompt is evaluated, and the seed follows
    from it as it always does.
    """
    engine = engines.get(call.model_path, EngineSettings.from_json(call.settings))
    sampling = SamplingParams.from_json(call.sampling)
    seed_later = None
    if sampling.seed is None and message_id_later is not None:
        later = message_id_later

        def seed_later() -> int:
            return records.seed_from_message_id(later())
    return engine.generate(call.prompt, sampling, special=call.parse_special, on_text=on_text, seed_later=seed_later)


def engines_of(job: JobContext) -> EngineCache:
    """Return the worker's engine cache."""
    return job.resource(ENGINES, EngineCache)


def execute_job(payload: dict[str, Any], job: JobContext) -> dict[str, Any]:
    """Herder job: run PreparedCall.to_json() `payload`, streaming text; return Generation.to_json().

    A payload without a seed gets its message ID as the call's late value once the
    server has signed the Message.
    """
    call = PreparedCall.from_json(payload)
    return execute(call, engines_of(job), on_text=job.emit, message_id_later=job.late_value).to_json()


def load_engine_job(payload: dict[str, Any], job: JobContext) -> None:
    """Herder warm-up job: load (and keep) the engine for {model_path, settings}."""
    engines_of(job).get(payload["model_path"], EngineSettings.from_json(payload["settings"]))


def prepare_worker(payload: Any, job: JobContext) -> None:
    """Herder warm-up job run by every new worker: importing this module loaded llama-cpp-python."""
    engines_of(job)
