"""Child modes of bench/inference_bench.py, each run in a fresh OS process: prints one JSON line.

    python bench/inference_children.py ttft baseline|by_id MODEL DATA MODEL_ID SETTINGS_JSON
    python bench/inference_children.py verify DATA MODEL_ID
    python bench/inference_children.py tps-serve MODEL SETTINGS_JSON
        (loads, warms, prints {"ready"}; then per stdin line {seed, max_tokens, sampling...}
        runs one completion and prints {tokens, wall_s}; see bench/inference_tps.py)

The direct baseline loads with `inference.llama_adapter.llama_params`: the very parameters
the engine loads with (n_threads, n_batch, n_ubatch, context, penalty window).
"""

from __future__ import annotations

import json
import resource
import sys
import time

PROMPT = "Write a long story about a dragon who learns to bake bread. Once upon a time"
SEED = 1234


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024



def child_ttft(mode: str, model: str, data: str, model_id: str, settings_json: str) -> dict:
    """In a fresh process: load the model (directly or by ID) and time the first token."""
    settings = json.loads(settings_json)
    # Imports are process start-up, not model loading: both sides import before the clock.
    import llama_cpp

    from inference.context import Inference
    from inference.engine import Engine
    from inference.llama_adapter import llama_params
    from inference.sampling import EngineSettings, SamplingParams
    from permastore.store import Store

    store, store_open_s = None, 0.0
    if mode == "by_id":
        # A node's store is open before any call; opening it (SQLite, wallet key) is start-up.
        opened = time.perf_counter()
        store = Store.open(data)
        store_open_s = time.perf_counter() - opened
    started = time.perf_counter()
    if mode == "baseline":
        llama = llama_cpp.Llama(**llama_params(model, EngineSettings.from_json(settings)))
        loaded = time.perf_counter()
        llama.create_completion(PROMPT, max_tokens=1, temperature=0.0, seed=SEED)
    else:
        # Verified once per server run (see "verify"); here the steady-state load by ID.
        path = Inference.open(store).models.resolve(model_id, verify=False)
        engine = Engine.from_path(path, EngineSettings.from_json(settings), model_id=model_id)
        loaded = time.perf_counter()
        engine.generate(PROMPT, SamplingParams(seed=SEED, temperature=0.0, max_tokens=1))
    done = time.perf_counter()
    return {"ttft_s": done - started, "load_s": loaded - started, "store_open_s": store_open_s,
            "peak_rss_mib": peak_rss_mib()}


def child_verify(data: str, model_id: str) -> dict:
    """In a fresh process: resolve the model by ID with its full verification."""
    from inference.context import Inference
    from permastore.store import Store

    inference = Inference.open(Store.open(data))
    started = time.perf_counter()
    inference.models.resolve(model_id, verify=True)
    return {"verify_s": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib()}


def direct_llama(model: str, settings_json: str):  # noqa: ANN201
    """Return llama-cpp-python's Llama on the file, loaded with the engine's own parameters."""
    import llama_cpp

    from inference.llama_adapter import llama_params
    from inference.sampling import EngineSettings

    return llama_cpp.Llama(**llama_params(model, EngineSettings.from_json(json.loads(settings_json))))


def child_tps_serve(model: str, settings_json: str) -> None:
    """In one process: load, warm up, then run the completions asked for on stdin (one JSON line each)."""
    started = time.perf_counter()
    llama = direct_llama(model, settings_json)
    load_s = time.perf_counter() - started
    llama.create_completion(PROMPT, max_tokens=4, seed=SEED)  # warm-up, like the server's first calls
    print(json.dumps({"ready": True, "load_s": load_s, "peak_rss_mib": peak_rss_mib()}), flush=True)
    for line in sys.stdin:
        ask = json.loads(line)
        llama.reset()  # what the engine does before every call: no cached prefix
        started = time.perf_counter()
        out = llama.create_completion(PROMPT, **ask)
        wall = time.perf_counter() - started
        print(json.dumps({"tokens": out["usage"]["completion_tokens"], "wall_s": wall}), flush=True)


def main() -> None:
    mode, *rest = sys.argv[1:]
    if mode == "ttft":
        print(json.dumps(child_ttft(*rest)))
    elif mode == "verify":
        print(json.dumps(child_verify(*rest)))
    elif mode == "tps-serve":
        child_tps_serve(*rest)
    else:
        sys.exit(f"unknown child mode {mode!r}")


if __name__ == "__main__":
    main()
