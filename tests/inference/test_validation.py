"""Every bad sampling or engine setting is a clear InvalidRequest: in Python, the CLI and over HTTP."""

from __future__ import annotations

import json
import math
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import InvalidRequest
from inference.sampling import MAX_C_INT, MAX_N_CTX, MAX_THREADS, EngineSettings, SamplingParams
from tests.inference.conftest import error_reason
from tests.inference.inference_server import start_server
from tests.inference.test_cli import permastore

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
SAMPLING_KEYS = [*SamplingParams.__dataclass_fields__, "bogus"]
SETTINGS_KEYS = [*EngineSettings.__dataclass_fields__, "bogus"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SAMPLING_KEYS), json_values, max_size=5) | json_values)
def test_any_sampling_json_is_params_or_invalid_request(data):
    try:
        params = SamplingParams.from_json(data)
    except InvalidRequest as exc:
        assert str(exc)
        return
    # What passes is usable as is: finite numbers, C-sized counts, string stops.
    assert all(math.isfinite(v) for v in (params.temperature, params.top_p, params.min_p, params.typical_p))
    assert 1 <= params.max_tokens <= MAX_C_INT and 0 <= params.top_k <= MAX_C_INT
    assert all(isinstance(s, str) and s for s in params.stop)
    assert SamplingParams.from_json(params.to_json()) == params


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(SETTINGS_KEYS), json_values, max_size=4) | json_values)
def test_any_settings_json_is_settings_or_invalid_request(data):
    try:
        engine_settings = EngineSettings.from_json(data)
    except InvalidRequest as exc:
        assert str(exc)
        return
    assert 1 <= engine_settings.n_ctx <= MAX_N_CTX and 1 <= engine_settings.n_threads <= MAX_THREADS


@pytest.mark.parametrize("bad, message", [
    ({"stop": 5}, "stop must be a string or a list of strings"),
    ({"stop": [1]}, "stop must be a list of non-empty strings"),
    ({"stop": [""]}, "stop must be a list of non-empty strings"),
    ({"stop": ["x"] * 33}, "stop holds at most 32"),
    ({"stop": ["x" * 257]}, "at most 256 characters"),
    ({"temperature": math.inf}, "temperature must be a finite number"),
    ({"top_p": math.nan}, "top_p must be a finite number"),
    ({"max_tokens": 1 << 40}, "max_tokens must be an integer in 1.."),
    ({"top_k": 1 << 40}, "top_k must be an integer in 0.."),
])
def test_bad_sampling_values_say_what_is_wrong(bad, message):
    with pytest.raises(InvalidRequest, match=message):
        SamplingParams.from_json(bad)


def test_stop_of_the_wrong_type_is_refused_when_built_directly():
    with pytest.raises(InvalidRequest, match="stop must be"):
        SamplingParams(stop=5).validate()


@pytest.mark.parametrize("bad, message", [
    ({"n_ctx": MAX_N_CTX + 1}, "n_ctx must be an integer in 1.."),
    ({"n_threads": MAX_THREADS + 1}, "n_threads must be an integer in 1.."),
    ({"n_batch": 10**12, "n_ubatch": 8}, "n_batch must be an integer in 1.."),
    ({"penalty_last_n": 10**12}, "penalty_last_n must be an integer in 0.."),
    ({"n_ctx": "2048"}, "n_ctx must be an integer"),
])
def test_settings_beyond_any_machine_are_refused(bad, message):
    with pytest.raises(InvalidRequest, match=message):
        EngineSettings.from_json(bad)


def test_spawn_refuses_settings_beyond_this_machine_or_model(inference, model_id):
    with pytest.raises(InvalidRequest, match="this machine's CPUs"):
        inference.processes.spawn(model_id, EngineSettings(n_ctx=128, n_threads=(os.cpu_count() or 1) + 1))
    with pytest.raises(InvalidRequest, match="the model's context length"):
        inference.processes.spawn(model_id, EngineSettings(n_ctx=513, n_threads=1))  # the tiny model holds 512
    assert inference.records.query_ids([("Type", ["Process"])]) == []


@pytest.mark.parametrize("args, message", [
    (["--threads", "100000"], "n_threads must be an integer in 1..512"),
    (["--ctx", str(MAX_N_CTX * 4)], "n_ctx must be an integer in 1.."),
    (["--ctx", "4096"], "the model's context length"),
    (["--max-tokens", str(1 << 40)], "max_tokens must be an integer in 1.."),
])
def test_cli_limits_are_one_line_and_nonzero(tmp_path, tiny_gguf, args, message):
    data = tmp_path / "data"
    _, out, _ = permastore(data, "model", "add", str(tiny_gguf), check_rc=0)
    rc, _, err = permastore(data, "run", out.strip(), "hi", *args)
    assert rc == 1 and len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    server = start_server(tmp_path_factory.mktemp("limits") / "data")
    server.model_id = server.add_model(tiny_gguf)
    yield server
    server.stop()


@pytest.mark.parametrize("path, body, message", [
    ("/v1/completions", {"prompt": "hi", "stop": 5}, "stop"),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 1 << 40}, "max_tokens"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stop": [""]}, "stop"),
    ("/processes", {"settings": {"n_ctx": MAX_N_CTX * 2}}, "n_ctx"),
    ("/processes", {"settings": {"n_threads": 10**6}}, "n_threads"),
])
def test_http_limits_are_400_json(node, path, body, message):
    with node.client() as client:
        reply = client.post(path, json={"model": node.model_id, **body})
    assert reply.status_code == 400, reply.text
    assert message in error_reason(reply)


def test_http_non_finite_numbers_are_400_json(node):
    # Python's JSON parser accepts Infinity and NaN; they must not reach the sampler.
    body = json.dumps({"model": node.model_id, "prompt": "hi", "temperature": math.inf})
    assert "Infinity" in body
    with node.client() as client:
        reply = client.post("/v1/completions", content=body.encode(), headers={"Content-Type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert "temperature" in error_reason(reply)
