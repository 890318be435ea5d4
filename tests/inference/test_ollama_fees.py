"""The Ollama API on a node with fees on and keys required: the official client with a key
(`Authorization: Bearer`, as OLLAMA_API_KEY sends it), 401 without, 402 without credit,
charges for calls and embeddings. Real server on 127.0.0.1."""

from __future__ import annotations

import ollama
import pytest

from inference.keys import KeyStore
from tests.inference.conftest import make_gguf
from tests.inference.inference_server import start_server

FEE_BASE = 100
FEE_TOKEN = 2
PAYER = "PAYER" + "x" * 37 + "A"
BROKE = "BROKE" + "x" * 37 + "A"


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    data = tmp_path_factory.mktemp("ollama-paid") / "data"
    data.mkdir(parents=True)
    keys = KeyStore.open(data)
    server_keys = {address: keys.create(address) for address in (PAYER, BROKE)}
    keys.close()
    server = start_server(data, herder={"fee_base": FEE_BASE, "fee_token": FEE_TOKEN, "require_keys": True})
    models = server.service.inference.models
    server.model_id = models.add(tiny_gguf, name="tiny")
    models.add(make_gguf(data.parent / "embedder.gguf", name="embedder", pooling_type=1), name="embedder")
    server.api_keys = server_keys
    server.service.credit(PAYER, 100_000)
    yield server
    server.stop()


def client_of(node, address=None) -> ollama.Client:
    headers = {"Authorization": f"Bearer {node.api_keys[address]}"} if address else {}
    return ollama.Client(host=node.url, headers=headers)


def test_keys_and_credit_are_required(node):
    with pytest.raises(ollama.ResponseError) as refused:
        client_of(node).generate(model="tiny", prompt="hi", options={"num_predict": 2})
    assert refused.value.status_code == 401 and "API key" in refused.value.error
    with node.client() as http:
        assert http.post("/api/chat", json={"model": "tiny"}).headers["www-authenticate"] == "Bearer"
    for call in (lambda c: c.generate(model="tiny", prompt="hi", options={"num_predict": 2}),
                 lambda c: list(c.chat(model="tiny", messages=[{"role": "user", "content": "x"}], stream=True)),
                 lambda c: c.embed(model="embedder", input="x")):
        with pytest.raises(ollama.ResponseError) as refused:
            call(client_of(node, BROKE))
        assert refused.value.status_code == 402, refused.value.error
    assert node.service.ledger.balance(BROKE) == 0


def test_calls_and_embeddings_are_charged_to_the_key_holder(node):
    ledger, client = node.service.ledger, client_of(node, PAYER)
    before = ledger.balance(PAYER)
    reply = client.generate(model="tiny", prompt="hi", options={"seed": 1, "num_predict": 4})
    after_call = ledger.balance(PAYER)
    needed = FEE_BASE + FEE_TOKEN * (reply.prompt_eval_count + 4)
    assert before - after_call == needed  # the fee of prompt + num_predict tokens, at the bare quote
    with node.client(Authorization=f"Bearer {node.api_keys[PAYER]}") as http:
        body = http.post("/api/generate", json={"model": "tiny", "prompt": "hi", "stream": False,
                                                "options": {"seed": 1, "num_predict": 4}}).json()
    assert body["fee"] == needed
    assert node.service.inference.records.load(body["record"]["message"]).record.caller == PAYER
    embedded = client.embed(model="embedder", input="the quick brown fox")
    assert after_call - needed - ledger.balance(PAYER) == FEE_BASE + FEE_TOKEN * embedded.prompt_eval_count
