"""Issue 7 points 9, 12 and 14 on a real server on 127.0.0.1: Process records signed by strangers are
checked like spawn requests, nonces never repeat across a restart, a bad body is refused before any
fee or record, credits take bounded integers, a signed request posted first by a stranger still works."""

from __future__ import annotations

import json
import os

import pytest

from inference import records
from inference.identity import engine_identity
from permastore.protocol import ans104, b64url
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag
from tests.inference.conftest import error_reason
from tests.inference.inference_server import start_server

OCTET = {"Content-Type": "application/octet-stream"}
STRANGER = Ed25519Signer(bytes(range(2, 34)))
PAYER = "PAYER" + "x" * 37 + "A"


def _stranger_process(client, model_id: str, **settings) -> str:
    """Post a Process record signed by a stranger (through POST /tx); return its ID."""
    record = records.ProcessRecord(
        model=model_id, engine=engine_identity(), chat_template=None, chat_template_sha256=None,
        system_prompt=None, settings={"n_ctx": 256, "n_batch": 32, "n_ubatch": 32, "n_threads": 1,
                                      "penalty_last_n": 64, "flash_attn": False, **settings},
    )
    tags = [*records.record_tags(record), Tag.text("Content-Type", "application/json")]
    item = ans104.build_item(STRANGER, records.canonical_json(records.record_json(record)), tags)
    assert client.post("/tx", content=item, headers=OCTET).status_code == 200
    return ans104.parse_header(item).id


def _messages_of(server, process_id: str) -> list[str]:
    return server.service.inference.records.query_ids([("Type", ["Message"]), ("Process", [process_id])])


@pytest.fixture
def node(tmp_path, tiny_gguf):
    server = start_server(tmp_path / "data")
    server.model_id = server.add_model(tiny_gguf)
    yield server
    server.stop()


@pytest.mark.parametrize("settings, reason", [
    ({"n_ctx": 65536, "n_threads": 64}, "n_threads must be at most"),
    ({"n_ctx": 65536, "n_threads": 1}, "n_ctx must be at most 512 (the model's context length)"),
    ({"n_ctx": 1 << 21}, "n_ctx must be an integer in 1.."),
])
def test_a_strangers_process_beyond_the_spawn_limits_runs_nothing(node, settings, reason):
    with node.client() as client:
        pid = _stranger_process(client, node.model_id, **settings)
        reply = client.post(f"/processes/{pid}/messages", json={"prompt": "hi", "max_tokens": 2})
        assert reply.status_code == 422, reply.text
        assert f"process {pid} cannot run here" in error_reason(reply) and reason in error_reason(reply)
        assert client.post("/v1/completions", json={"process": pid, "prompt": "hi"}).status_code == 422
    assert _messages_of(node, pid) == []
    assert node.service.info()["worker_restarts"] == 0  # no worker was asked to allocate it (and died)


def test_nonces_on_a_strangers_process_continue_after_a_restart(tmp_path, tiny_gguf):
    data = tmp_path / "data"
    server = start_server(data)
    try:
        model_id = server.add_model(tiny_gguf)
        with server.client() as client:
            pid = _stranger_process(client, model_id)
            nonces = [client.post(f"/processes/{pid}/messages", json={"prompt": p, "max_tokens": 2}).json()["nonce"]
                      for p in ("one", "two")]
    finally:
        server.stop()
    server = start_server(data)  # a fresh server: the chain head is read back from the durable records
    try:
        with server.client() as client:
            third = client.post(f"/processes/{pid}/messages", json={"prompt": "three", "max_tokens": 2})
            assert third.status_code == 200, third.text
            nonces.append(third.json()["nonce"])
        assert nonces == [1, 2, 3]
        book = server.service.inference.records
        chain = records.initial_chain(pid)
        for message_id in sorted(_messages_of(server, pid), key=lambda m: book.load(m).record.nonce):
            message = book.load(message_id).record
            chain = records.next_chain(chain, message.content_hash())
            assert message.hash_chain == b64url.encode(chain)  # one unbroken chain across the restart
    finally:
        server.stop()


@pytest.fixture
def paid(tmp_path, tiny_gguf):
    server = start_server(tmp_path / "data", herder={"fee_base": 10, "fee_token": 1})
    server.model_id = server.add_model(tiny_gguf)
    with server.client() as client:
        assert client.post(f"/credits/{PAYER}", json={"amount": 5000}).status_code == 200
    yield server
    server.stop()


@pytest.mark.parametrize("path, extra", [
    ("/v1/completions", {"stream": "yes"}),
    ("/v1/completions", {"max_tokens": 1 << 40}),
    ("/v1/chat/completions", {"stream": 1, "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"tools": [{"type": "function"}]}),
])
def test_a_request_refused_with_400_takes_no_fee_and_writes_nothing(paid, path, extra):
    node = paid
    keys = node.service.keys
    key = keys.create(PAYER)
    body = {"model": node.model_id, "prompt": "hi", "max_tokens": 4, **extra}
    if "messages" in extra:
        del body["prompt"]
    before = node.service.inference.records.query_ids([("Type", ["Message"])])
    with node.client(Authorization=f"Bearer {key}") as client:
        reply = client.post(path, json=body)
        assert reply.status_code == 400, reply.text
        assert client.get(f"/credits/{PAYER}").json()["balance"] == 5000
    assert node.service.inference.records.query_ids([("Type", ["Message"])]) == before
    assert node.service.inference.records.query_ids([("Type", ["Result"])]) == []


@pytest.mark.parametrize("raw", [b'{"amount": 1e30}', b'{"amount": 1.0}', b'{"amount": 4611686018427387905}',
                                 b'{"amount": 100000000000000000000000}', b'{"amount": "5"}', b'{"amount": true}',
                                 b'{"amount": 5, "extra": 1}', b'{"amount": -3}'])
def test_credits_are_bounded_integers(node, raw):
    with node.client() as client:
        reply = client.post(f"/credits/{PAYER}", content=raw, headers={"Content-Type": "application/json"})
        assert reply.status_code == 400, reply.text
        assert client.get(f"/credits/{PAYER}").json() == {"address": PAYER, "balance": 0}


@pytest.mark.parametrize("address", ["short", "A" * 44, "B" * 43, "%00" * 20])
def test_credit_routes_validate_the_address(node, address):
    with node.client() as client:
        assert client.get(f"/credits/{address}").status_code == 400
        assert client.post(f"/credits/{address}", json={"amount": 5}).status_code == 400


def test_a_signed_request_posted_first_by_a_stranger_is_still_its_owners(paid):
    node = paid
    signer = Ed25519Signer(os.urandom(32))
    body = {"model": node.model_id, "prompt": "mine", "max_tokens": 3, "seed": 1}
    item = ans104.build_item(signer, json.dumps(body).encode(), [Tag.text("Content-Type", "application/json")],
                             target=b64url.decode(node.node_address))
    owner = ans104.parse_header(item).owner_address
    with node.client() as client:
        client.post(f"/credits/{owner}", json={"amount": 1000})
        assert client.post("/tx", content=item, headers=OCTET).status_code == 200  # the stranger "burns" it
        reply = client.post("/v1/completions", content=item, headers=OCTET)
        assert reply.status_code == 200, reply.text
        assert client.get(f"/credits/{owner}").json()["balance"] == 1000 - reply.json()["fee"]
        again = client.post("/v1/completions", content=item, headers=OCTET)
        assert again.status_code == 409 and "already used" in error_reason(again)
