"""The official `openai` Python client, unchanged, against a real node on 127.0.0.1."""

from __future__ import annotations

import openai
import pytest

from inference.keys import KeyStore
from tests.inference.inference_server import start_server

ADDRESS = "OPENAIxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"[:43]


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    server = start_server(tmp_path_factory.mktemp("openai") / "data")
    server.model_id = server.add_model(tiny_gguf)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(node):
    # A local node needs no key; the client insists on one, any placeholder does.
    with openai.OpenAI(base_url=f"{node.url}/v1", api_key="local", max_retries=0) as client:
        yield client


def test_models_list(node, client):
    models = client.models.list()
    assert node.model_id in [model.id for model in models.data]
    assert client.models.retrieve(node.model_id).id == node.model_id


def test_chat_completion(node, client):
    reply = client.chat.completions.create(
        model=node.model_id,
        messages=[{"role": "system", "content": "Tell a joke on the given topic, on one line"},
                  {"role": "user", "content": "llamas"}],
        max_tokens=10, seed=4, temperature=0.5,
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 10
    record = reply.model_extra["record"]
    assert set(record) == {"process", "message", "result"}


def test_completion(node, client):
    reply = client.completions.create(model=node.model_id, prompt="Once", max_tokens=6, seed=9)
    assert reply.object == "text_completion"
    again = client.completions.create(model=node.model_id, prompt="Once", max_tokens=6, seed=9)
    assert reply.choices[0].text == again.choices[0].text
    assert reply.model_extra["record"]["message"] != again.model_extra["record"]["message"]


def test_streaming_chat_and_completion(node, client):
    request = dict(model=node.model_id, messages=[{"role": "user", "content": "go"}], max_tokens=12, seed=21)
    streamed = client.chat.completions.create(stream=True, **request)
    pieces, last = [], None
    for chunk in streamed:
        pieces.append(chunk.choices[0].delta.content or "")
        last = chunk
    assert last.choices[0].finish_reason in ("stop", "length")
    whole = client.chat.completions.create(**request)
    assert "".join(pieces) == whole.choices[0].message.content
    text_stream = client.completions.create(model=node.model_id, prompt="Once", max_tokens=6, seed=9, stream=True)
    text = "".join(chunk.choices[0].text for chunk in text_stream)
    plain = client.completions.create(model=node.model_id, prompt="Once", max_tokens=6, seed=9)
    assert text == plain.choices[0].text


def test_errors_arrive_as_openai_errors(node, client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="A" * 43, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=node.model_id, messages=[{"role": "user", "content": "x"}], n=3)


def test_a_real_key_works_and_a_wrong_one_is_refused(node, tmp_path):
    keys = KeyStore.open(node.app.state.node.config.data_dir)
    key = keys.create(ADDRESS)
    keys.close()
    with openai.OpenAI(base_url=f"{node.url}/v1", api_key=key, max_retries=0) as keyed:
        reply = keyed.completions.create(model=node.model_id, prompt="a", max_tokens=2)
    message = node.service.inference.records.load(reply.model_extra["record"]["message"])
    assert message.record.caller == ADDRESS
    with openai.OpenAI(base_url=f"{node.url}/v1", api_key="psk_" + "B" * 43, max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model=node.model_id, prompt="a", max_tokens=2)
