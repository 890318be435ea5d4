"""Issue 10 point 8: errors an OpenAI client can read, real `created` times; point 7's `chat_template` in a body.

The official `openai` package, unchanged, against a real node on 127.0.0.1: it shows the
node's reason (`APIStatusError.message`), not a bare "Error code: 400". Routes outside
`/v1/` keep the node's `{"error": reason, "status": N}`.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.inference.inference_server import start_server

from .conftest import make_gguf

GEMMA_TOKENS = ("<start_of_turn>", "<end_of_turn>")


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    folder = tmp_path_factory.mktemp("openai-errors")
    server = start_server(folder / "data")
    server.model_id = server.add_model(tiny_gguf)
    server.plain_id = server.add_model(make_gguf(folder / "gemma-like.gguf", chat_template=None,
                                                 name="gemma-like", chat_tokens=GEMMA_TOKENS))
    server.stored_at = time.time()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(node):
    with openai.OpenAI(base_url=f"{node.url}/v1", api_key="local", max_retries=0) as client:
        yield client


def test_openai_client_shows_the_reason(node, client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=node.model_id, messages=[{"role": "user", "content": "hi"}],
                                       temperature=-1)
    error = caught.value
    assert error.status_code == 400
    assert "temperature must be >= 0" in error.message
    assert error.type == "invalid_request_error"
    assert error.body["message"] == "temperature must be >= 0"


def test_missing_model_is_openai_not_found(node, client):
    missing = "A" * 43
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model=missing, messages=[{"role": "user", "content": "hi"}])
    error = caught.value
    assert f"model {missing} is not stored here" in error.message
    assert error.code == "model_not_found" and error.param == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve(missing)
    assert f"no model {missing} here" in caught.value.message


def test_every_v1_refusal_has_openai_shape(node):
    with node.client() as http:
        cases = [
            http.post("/v1/chat/completions", json={"model": node.model_id, "messages": []}),  # body model
            http.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"}),
            http.post("/v1/completions", json={"model": node.model_id, "prompt": "x", "n": 3}),
            http.get("/v1/nowhere"),  # no such route (the manifest route refuses the "ID" v1)
            http.get(f"/v1/models/{'B' * 43}"),
            http.post("/v1/chat/completions", json={"model": node.model_id, "prompt": "x" * 10, "messages": [
                {"role": "user", "content": "word " * 2000}]}),  # longer than the context
        ]
        for response in cases:
            assert 400 <= response.status_code < 500, response.text
            error = response.json()["error"]
            assert set(error) >= {"message", "type", "param", "code"}, response.text
            assert isinstance(error["message"], str) and error["message"]
        assert cases[4].status_code == 404 and cases[4].json()["error"]["code"] == "not_found"
        assert cases[5].json()["error"]["code"] == "context_length_exceeded"
        # Outside /v1 the node's own shape stays.
        response = http.post("/processes", json={"model": node.model_id, "settings": {"n_ctx": -5}})
        assert response.status_code == 400
        assert isinstance(response.json()["error"], str) and response.json()["status"] == 400
        response = http.post(f"/replay/{'A' * 43}")
        assert response.status_code == 404 and response.json()["status"] == 404


def test_created_is_a_real_unix_time(node, client):
    before = int(time.time())
    reply = client.completions.create(model=node.model_id, prompt="Once", max_tokens=2, seed=1)
    assert before <= reply.created <= int(time.time())
    listed = {model.id: model for model in client.models.list().data}
    assert abs(listed[node.model_id].created - node.stored_at) < 600
    assert client.models.retrieve(node.model_id).created == listed[node.model_id].created
    stream = client.chat.completions.create(model=node.model_id, messages=[{"role": "user", "content": "x"}],
                                            max_tokens=2, seed=1, stream=True)
    assert all(before <= chunk.created <= int(time.time()) for chunk in stream)


def test_chat_template_in_the_body_spawns_or_reuses_its_process(node, client):
    def chat(**extra):
        return client.chat.completions.create(model=node.plain_id, messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=2, seed=3, extra_body=extra)

    guessed = chat()  # no template of its own: the one its vocabulary calls for
    gemma = chat(chat_template="gemma")
    chatml = chat(chat_template="chatml")
    again = chat(chat_template="chatml")
    processes = node.service.inference.processes
    assert processes.get(guessed.model_extra["record"]["process"]).record.chat_template == "gemma"
    assert processes.get(chatml.model_extra["record"]["process"]).record.chat_template == "chatml"
    assert again.model_extra["record"]["process"] == chatml.model_extra["record"]["process"]
    assert gemma.model_extra["record"]["process"] != chatml.model_extra["record"]["process"]
    message = node.service.inference.records.load(chatml.model_extra["record"]["message"]).record
    assert message.rendered_prompt.startswith("<|im_start|>user\nhi<|im_end|>")
    with pytest.raises(openai.BadRequestError) as caught:
        chat(chat_template="nope")
    assert "unknown chat template 'nope'" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        chat(chat_template="gemma", process=chatml.model_extra["record"]["process"])
    assert "renders with chat template 'chatml', not 'gemma'" in caught.value.message


def test_a_stream_that_fails_late_carries_an_openai_error(node):
    """A refusal before the stream starts is a plain OpenAI error response, not a broken stream."""
    with httpx.Client(base_url=node.url, timeout=60) as http:
        response = http.post("/v1/chat/completions", json={
            "model": node.model_id, "stream": True, "messages": [{"role": "user", "content": "x"}],
            "max_tokens": -1})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
