"""Inference over HTTP on a real server on 127.0.0.1: OpenAI and AO-style routes, fees-off mode."""

from __future__ import annotations

import json

import pytest

from tests.inference.conftest import error_reason
from tests.inference.inference_server import start_server

MISSING = "A" * 43  # a well-formed ID that nothing has


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    """A local node on its embedded default (no herder.json): fees off, no key needed."""
    server = start_server(tmp_path_factory.mktemp("node") / "data")
    server.model_id = server.add_model(tiny_gguf)
    yield server
    server.stop()


@pytest.fixture
def http(node):
    with node.client() as client:
        yield client


def test_local_default_chat_completion_needs_no_key_and_costs_nothing(node, http):
    reply = http.post("/v1/chat/completions", json={
        "model": node.model_id,
        "messages": [{"role": "user", "content": "tell me a joke"}],
        "max_tokens": 12, "seed": 7, "temperature": 0.7,
    })
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == node.model_id
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["fee"] == 0
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    record = body["record"]
    assert set(record) == {"process", "message", "result"}
    # The answer is the recorded one.
    stored = http.get(f"/results/{record['message']}").json()
    assert stored["id"] == record["result"]
    assert stored["text"] == body["choices"][0]["message"]["content"]
    assert stored["seed"] == 7 == body["seed"]
    info = http.get("/herder/info").json()
    assert info["base_fee"] == 0 and info["token_fee"] == 0 and info["pricing"] is False


def test_same_seed_same_output_and_calls_share_the_default_process(node, http):
    request = {"model": node.model_id, "prompt": "once upon a time", "max_tokens": 10, "seed": 3}
    first = http.post("/v1/completions", json=request).json()
    second = http.post("/v1/completions", json=request).json()
    assert first["object"] == "text_completion"
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert first["record"]["process"] == second["record"]["process"]
    assert first["record"]["message"] != second["record"]["message"]


def test_streamed_chat_is_openai_sse_ending_with_done(node, http):
    request = {
        "model": node.model_id, "stream": True, "seed": 11, "max_tokens": 16,
        "messages": [{"role": "user", "content": "stream please"}],
    }
    with http.stream("POST", "/v1/chat/completions", json=request) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in reply.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] in ("stop", "length")
    recorded = http.get(f"/results/{last['record']['message']}").json()
    assert streamed == recorded["text"]
    # The same call without streaming gives the same text.
    plain = http.post("/v1/chat/completions", json={**request, "stream": False}).json()
    assert plain["choices"][0]["message"]["content"] == streamed


def test_ao_style_spawn_send_result_and_replay(node, http):
    spawned = http.post("/processes", json={
        "model": node.model_id, "system_prompt": "Tell a joke on the given topic, on one line",
        "settings": {"n_ctx": 256, "n_batch": 32, "n_ubatch": 32, "n_threads": 1},
    })
    assert spawned.status_code == 201, spawned.text
    pid = spawned.json()["process"]
    sent = [
        http.post(f"/processes/{pid}/messages", json={"messages": [{"role": "user", "content": topic}],
                                                     "max_tokens": 8, "seed": 5})
        for topic in ("cats", "dogs")
    ]
    assert [s.status_code for s in sent] == [200, 200], sent[0].text
    first, second = (s.json() for s in sent)
    assert (first["process"], first["nonce"], second["nonce"]) == (pid, 1, 2)
    result = http.get(f"/results/{second['message']}").json()
    assert result["id"] == second["result"] and result["text"] == second["output"]
    replayed = http.post(f"/replay/{first['result']}")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["identical"] is True
    assert replayed.json()["summary"].startswith("identical")


def test_replay_runs_in_a_herder_worker_not_the_server(node, http, monkeypatch):
    sent = http.post("/v1/completions", json={"model": node.model_id, "prompt": "owls", "max_tokens": 6, "seed": 9})
    assert sent.status_code == 200, sent.text

    def not_here(*args, **kwargs):
        raise AssertionError("replay loaded a model into the server process")

    # The server runs in this process; herder workers are other processes, untouched by this.
    monkeypatch.setattr(node.service.inference.engines, "get", not_here)
    replayed = http.post(f"/replay/{sent.json()['record']['result']}")
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["identical"] is True


def test_models_are_listed_by_id(node, http):
    listing = http.get("/v1/models").json()
    assert listing["object"] == "list"
    assert node.model_id in [m["id"] for m in listing["data"]]
    assert http.get(f"/v1/models/{node.model_id}").json()["id"] == node.model_id
    assert http.get(f"/v1/models/{MISSING}").status_code == 404


@pytest.mark.parametrize("body, status, reason", [
    ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model is required"),
    ({"model": MISSING, "messages": [{"role": "user", "content": "hi"}]}, 404, "not stored here"),
    ({"model": "MODEL", "messages": []}, 400, "messages must be a non-empty list"),
    ({"model": "MODEL", "messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400, "temperature"),
    ({"model": "MODEL", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n must be 1"),
    ({"model": "MODEL", "messages": [{"role": "user", "content": "hi"}], "tools": [{"x": 1}]}, 400, "tools"),
    ({"model": "MODEL", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
    ({"model": "MODEL", "messages": [{"role": "user", "content": "hi " * 2000}]}, 400, "context"),
])
def test_bad_requests_get_a_json_reason(node, http, body, status, reason):
    if body.get("model") == "MODEL":
        body = {**body, "model": node.model_id}
    reply = http.post("/v1/chat/completions", json=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["status"] == status
    assert reason in error_reason(reply)


def test_malformed_bodies_and_unknown_records(node, http):
    reply = http.post("/v1/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "not valid JSON" in error_reason(reply)
    assert http.post("/v1/completions", json=[1, 2]).status_code == 400
    too_big = http.post("/v1/completions", content=b" " * (5 * 1024 * 1024))
    assert too_big.status_code == 413
    assert http.get(f"/results/{MISSING}").status_code == 404
    assert http.get("/results/short").status_code == 400
    assert http.post(f"/processes/{MISSING}/messages", json={"prompt": "x"}).status_code == 404
    both = http.post(f"/processes/{MISSING}/messages", json={"prompt": "x", "messages": []})
    assert both.status_code == 400 and "exactly one of prompt or messages" in error_reason(both)
    assert http.post(f"/replay/{MISSING}").status_code == 404


@pytest.mark.parametrize("body, reason", [
    ({"settings": {"n_ctx": 10**9}}, "n_ctx must be an integer in 1.."),
    ({"settings": {"n_threads": 10**6}}, "n_threads must be an integer in 1.."),
    ({"settings": {"n_threads": 500}}, "n_threads must be at most"),  # beyond this machine's CPUs
    ({"settings": {"n_ctx": "big"}}, "n_ctx"),
    ({"settings": {"nope": 1}}, "unknown engine settings"),
    ({"settings": [1]}, "settings must be an object"),
    ({"chat_template": "nope"}, "unknown chat template"),
    ({"system_prompt": 5}, "system_prompt"),
])
def test_bad_spawns_get_a_json_reason(node, http, body, reason):
    reply = http.post("/processes", json={"model": node.model_id, **body})
    assert reply.status_code == 400, reply.text
    assert reason in error_reason(reply)


@pytest.mark.parametrize("extra, reason", [
    ({"stop": 5}, "stop must be"),
    ({"stop": [1]}, "stop must be"),
    ({"process": ["x"]}, "process must be"),
    ({"stream": "yes"}, "stream must be"),
    ({"payment": True}, "payment"),
])
def test_bad_call_fields_get_a_json_reason(node, http, extra, reason):
    reply = http.post("/v1/completions", json={"model": node.model_id, "prompt": "x", **extra})
    assert reply.status_code == 400, reply.text
    assert reason in error_reason(reply)
