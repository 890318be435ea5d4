"""The engine through real llama.cpp: determinism, seeds, stops, streaming, limits, identity."""

import dataclasses
import threading

import pytest

from inference.engine import (
    Engine,
    EngineCache,
)
from inference.errors import InvalidRequest, PromptTooLong
from inference.generation import token_hash
from inference.identity import engine_identity, identity_differences
from inference.sampling import EngineSettings, SamplingParams

SETTINGS = EngineSettings(n_ctx=128, n_batch=32, n_ubatch=32, n_threads=1)


@pytest.fixture(scope="module")
def engine(tiny_gguf):
    loaded = Engine.from_path(tiny_gguf, SETTINGS)
    yield loaded
    loaded.close()


def test_same_seed_same_tokens_across_calls(engine):
    params = SamplingParams(seed=42, max_tokens=24)
    first = engine.generate("tell a joke", params)
    # A different call in between must leave no state behind (reset, fresh sampler).
    engine.generate("something else entirely", SamplingParams(seed=7, max_tokens=24))
    second = engine.generate("tell a joke", params)
    assert first.token_ids == second.token_ids
    assert first.text == second.text
    assert first.token_hash == token_hash(second.token_ids)


def test_same_seed_same_tokens_across_engines(tiny_gguf, engine):
    params = SamplingParams(seed=5, max_tokens=24)
    other = Engine.from_path(tiny_gguf, SETTINGS)
    try:
        assert other.generate("hello", params).token_ids == engine.generate("hello", params).token_ids
    finally:
        other.close()


def test_seed_changes_the_output(engine):
    outputs = {engine.generate("hello", SamplingParams(seed=seed, max_tokens=16)).token_ids for seed in range(4)}
    assert len(outputs) > 1


def test_greedy_is_independent_of_seed(engine):
    a = engine.generate("hello", SamplingParams(seed=1, temperature=0, max_tokens=16))
    b = engine.generate("hello", SamplingParams(seed=2, temperature=0, max_tokens=16))
    assert a.token_ids == b.token_ids


def test_max_tokens_is_a_limit(engine):
    generation = engine.generate("hello", SamplingParams(seed=3, max_tokens=5, temperature=0))
    assert len(generation.token_ids) <= 5
    if len(generation.token_ids) == 5:
        assert generation.finish_reason == "length"


def test_stop_string_cuts_text_and_stops(engine):
    full = engine.generate("hello", SamplingParams(seed=9, max_tokens=40, temperature=0))
    visible = full.text.replace("\ufffd", "")
    stop = next(ch for ch in visible[3:] if ch.isprintable() and ch.strip())
    cut = engine.generate("hello", SamplingParams(seed=9, max_tokens=40, temperature=0, stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert stop not in cut.text
    assert full.text.startswith(cut.text)
    assert len(cut.token_ids) < len(full.token_ids)


def test_streamed_text_equals_final_text(engine):
    pieces = []
    generation = engine.generate("hello", SamplingParams(seed=11, max_tokens=30), on_text=pieces.append)
    assert pieces and "".join(pieces) == generation.text


def test_prompt_longer_than_context_is_refused(engine):
    with pytest.raises(PromptTooLong, match="context holds 128"):
        engine.generate("word " * 400, SamplingParams(seed=1))


def test_call_without_seed_is_refused(engine):
    with pytest.raises(InvalidRequest, match="seed"):
        engine.generate("hello", SamplingParams())


@pytest.mark.parametrize("bad", [
    {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5}, {"min_p": 2}, {"max_tokens": 0},
    {"top_k": -1}, {"seed": -1}, {"seed": 2**32 - 1}, {"stop": ("",)}, {"temperature": "hot"},
])
def test_bad_sampling_is_refused(bad):
    with pytest.raises(InvalidRequest):
        SamplingParams(**bad).validate()


def test_sampling_json_round_trip_and_unknown_keys():
    params = SamplingParams(seed=3, stop=("a", "b"), temperature=0.5).validate()
    assert SamplingParams.from_json(params.to_json()) == params
    with pytest.raises(InvalidRequest, match="unknown sampling"):
        SamplingParams.from_json({"temprature": 1})


def test_bad_settings_are_refused():
    with pytest.raises(InvalidRequest):
        EngineSettings(n_ctx=0).validate()
    with pytest.raises(InvalidRequest, match="n_ubatch"):
        EngineSettings(n_batch=8, n_ubatch=16).validate()


def test_identity_names_library_build_and_cpu():
    identity = engine_identity()
    import llama_cpp

    assert identity["llama_cpp_python"] == llama_cpp.__version__
    assert "CPU" in identity["llama_cpp_system_info"]
    assert identity["llama_cpp_version"] != "unknown"
    assert len(identity["llama_cpp_build_sha256"]) == 64
    assert isinstance(identity["cpu_features"], list)
    changed = dict(identity, cpu_features=["neon"])
    assert identity_differences(identity, identity) == []
    assert [line.split(":")[0] for line in identity_differences(changed, identity)] == ["cpu_features"]


def test_output_stops_where_the_context_ends(engine):
    prompt = "ab " * 40
    n_prompt = len(engine.tokenize(prompt, special=False))
    generation = engine.generate(prompt, SamplingParams(seed=1, temperature=0, max_tokens=500))
    # Greedy on this model never ends by itself before the context is full.
    assert n_prompt + len(generation.token_ids) == SETTINGS.n_ctx
    assert generation.finish_reason == "length"


def test_bos_is_added_exactly_once(engine):
    bos = engine.llama.token_bos()
    plain = engine.tokenize("hi", special=False)
    templated = engine.tokenize("<s>[INST] hi", special=True)  # a template that writes bos_token itself
    assert plain[0] == bos and plain[1] != bos
    assert templated[0] == bos and templated[1] != bos
    # Without special parsing "<s>" is just text after the one real BOS.
    literal = engine.tokenize("<s>", special=False)
    assert literal[0] == bos and bos not in literal[1:]


@pytest.mark.parametrize("seed", [1, 42, 4000000000])
def test_a_seed_given_after_the_prompt_is_evaluated_gives_the_same_tokens(engine, seed):
    asked = []
    upfront = engine.generate("tell a joke about owls", SamplingParams(seed=seed, max_tokens=24, temperature=1.0))
    later = engine.generate("tell a joke about owls", SamplingParams(max_tokens=24, temperature=1.0),
                            seed_later=lambda: asked.append(seed) or seed)
    assert asked == [seed]
    assert later.token_ids == upfront.token_ids and later.text == upfront.text


def test_a_late_seed_must_be_a_valid_seed(engine):
    with pytest.raises(InvalidRequest, match="seed must be"):
        engine.generate("hi", SamplingParams(max_tokens=2), seed_later=lambda: -1)


def test_an_engine_evicted_while_generating_is_freed_only_once_the_generation_ends(tiny_gguf):
    """A cache shared by threads: loading a second model evicts the first while a call is still
    generating on it; the model is freed only after that call, which completes normally."""
    cache = EngineCache(size=1)
    try:
        first = cache.get(tiny_gguf, SETTINGS)
        streaming, go_on = threading.Event(), threading.Event()

        def on_text(_text):
            streaming.set()
            go_on.wait(30)

        outcome = {}
        call = threading.Thread(target=lambda: outcome.update(
            generation=first.generate("tell a joke", SamplingParams(seed=3, max_tokens=12), on_text=on_text)))
        call.start()
        assert streaming.wait(30)  # the call is generating on the first engine, and waits here
        other = threading.Thread(target=cache.get, args=(tiny_gguf, dataclasses.replace(SETTINGS, n_ctx=256)))
        other.start()
        other.join(1.0)  # the second load evicts the first engine
        assert first.llama is not None  # not freed under the running call
        go_on.set()
        call.join(30)
        other.join(30)
        assert not call.is_alive() and not other.is_alive()
        assert outcome["generation"].token_ids and first.llama is None
    finally:
        cache.close()
