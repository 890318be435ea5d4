"""Issue 7 point 5: anyone's upload is not a model here, and a chat template cannot pin the server.

A real server on 127.0.0.1: a stranger posts the tiny GGUF as an item tagged `Type: model`
through POST /tx; it is not listed and cannot be run until its owner is trusted
(`serve --trust-model-owner`). A trusted model whose template loops for ever gets a 400,
and data routes keep answering meanwhile.
"""

from __future__ import annotations

import threading
import time

import pytest

from inference.settings import HerderSettings
from permastore.protocol import ans104
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag
from tests.inference.conftest import error_reason, make_gguf
from tests.inference.inference_server import start_server

OCTET = {"Content-Type": "application/octet-stream"}
STRANGER = Ed25519Signer(bytes(range(1, 33)))
HOSTILE = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}x"


def _post_as_stranger(server, gguf) -> str:
    """Upload the GGUF as the stranger's own signed item tagged Type: model; return its ID."""
    item = ans104.build_item(STRANGER, gguf.read_bytes(), [Tag.text("Type", "model"), Tag.text("App-Name", "x")])
    with server.client() as client:
        posted = client.post("/tx", content=item, headers=OCTET)
    assert posted.status_code == 200, posted.text
    return ans104.parse_header(item).id


def _stranger_address() -> str:
    return ans104.parse_header(ans104.build_item(STRANGER, b"x", [])).owner_address


@pytest.fixture
def untrusting(tmp_path):
    server = start_server(tmp_path / "data")
    yield server
    server.stop()


def test_a_strangers_model_is_neither_listed_nor_run(untrusting, tiny_gguf):
    server = untrusting
    model_id = _post_as_stranger(server, tiny_gguf)
    own = server.add_model(make_gguf(server.store.root / "own.gguf", name="own"))
    with server.client() as client:
        listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert listed == [own]
        assert client.get(f"/v1/models/{model_id}").status_code == 404
        for path, body in [("/v1/completions", {"model": model_id, "prompt": "hi", "max_tokens": 2}),
                           ("/processes", {"model": model_id})]:
            reply = client.post(path, json=body)
            assert reply.status_code == 403, reply.text
            assert "not trusted here" in error_reason(reply) and "--trust-model-owner" in error_reason(reply)
    # Nothing was spawned on it.
    assert server.service.inference.records.query_ids([("Type", ["Process"]), ("Model", [model_id])]) == []


def test_a_trusted_owners_model_is_listed_and_runs(tmp_path, tiny_gguf):
    settings = HerderSettings.of(trust_model_owners=(_stranger_address(),))
    server = start_server(tmp_path / "data", herder=settings)
    try:
        model_id = _post_as_stranger(server, tiny_gguf)
        with server.client() as client:
            assert model_id in [m["id"] for m in client.get("/v1/models").json()["data"]]
            reply = client.post("/v1/completions", json={"model": model_id, "prompt": "hi", "max_tokens": 3, "seed": 1})
            assert reply.status_code == 200, reply.text
    finally:
        server.stop()


def test_a_template_that_never_ends_gets_a_400_and_never_pins_the_server(untrusting, tmp_path):
    server = untrusting
    model_id = server.add_model(make_gguf(tmp_path / "hostile.gguf", chat_template=HOSTILE, name="hostile"))
    replies: list = []

    def hostile_call() -> None:
        with server.client() as client:
            replies.append(client.post("/v1/chat/completions", json={
                "model": model_id, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}))

    callers = [threading.Thread(target=hostile_call) for _ in range(4)]
    started = time.monotonic()
    for thread in callers:
        thread.start()
    with server.client() as client:
        # While the templates run, the node serves: plain routes answer at once.
        for _ in range(10):
            asked = time.monotonic()
            assert client.get("/info").status_code == 200
            assert time.monotonic() - asked < 2
            time.sleep(0.2)
    for thread in callers:
        thread.join(120)
    assert [r.status_code for r in replies] == [400] * 4, [r.text for r in replies]
    assert all("took longer than" in error_reason(r) for r in replies)
    assert time.monotonic() - started < 60
