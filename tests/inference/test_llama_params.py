"""One function turns recorded engine settings into llama.cpp's parameters; the engine loads with
exactly them (and so does the benchmark's direct baseline)."""

from __future__ import annotations

from inference import llama_adapter
from inference.engine import Engine
from inference.sampling import EngineSettings

SETTINGS = EngineSettings(n_ctx=96, n_batch=24, n_ubatch=8, n_threads=1, penalty_last_n=17)


def test_the_engine_loads_with_the_params_of_its_settings(tiny_gguf):
    params = llama_adapter.llama_params(tiny_gguf, SETTINGS)
    assert params["n_threads"] == params["n_threads_batch"] == 1
    assert (params["n_ctx"], params["n_batch"], params["n_ubatch"], params["last_n_tokens_size"]) == (96, 24, 8, 17)
    assert params["use_mmap"] and params["n_gpu_layers"] == 0 and not params["embedding"]
    engine = Engine.from_path(tiny_gguf, SETTINGS)
    try:
        llama = engine.llama
        assert (llama.context_params.n_ctx, llama.context_params.n_batch, llama.context_params.n_ubatch) == (96, 24, 8)
        assert llama.context_params.n_threads == llama.context_params.n_threads_batch == 1
        assert llama.last_n_tokens_size == 17
    finally:
        engine.close()
