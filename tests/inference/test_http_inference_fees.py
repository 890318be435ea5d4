"""Fees on, keys required: 401 without a key, 402 with the amount needed, charges, quotes,
concurrent calls against one balance, Credit-Notice records. Real server on 127.0.0.1."""

from __future__ import annotations

import threading

import pytest

from inference.keys import KeyStore
from inference.records import MessageRecord
from tests.inference.conftest import error_reason
from tests.inference.inference_server import start_server

FEE_BASE = 100
FEE_TOKEN = 2
MAX_TOKENS = 6
PROMPT = "the quick brown fox"
PAYER = "PAYER" + "x" * 37 + "A"  # canonical b64url addresses
RACER = "RACER" + "x" * 37 + "A"
BROKE = "BROKE" + "x" * 37 + "A"


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    data = tmp_path_factory.mktemp("paid") / "data"
    data.mkdir(parents=True)
    keys = KeyStore.open(data)
    api_keys = {address: keys.create(address) for address in (PAYER, RACER, BROKE)}
    keys.close()
    server = start_server(data, herder={
        "fee_base": FEE_BASE, "fee_token": FEE_TOKEN, "require_keys": True, "workers": 2,
    })
    server.model_id = server.add_model(tiny_gguf)
    server.api_keys = api_keys
    yield server
    server.stop()


@pytest.fixture(scope="module")
def needed(tiny_gguf) -> int:
    """The fee formula computed here, with tokens counted by llama.cpp's own tokenizer."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(tiny_gguf), vocab_only=True, verbose=False)
    prompt_tokens = len(vocab.tokenize(PROMPT.encode(), add_bos=True, special=False))
    return FEE_BASE + FEE_TOKEN * (prompt_tokens + MAX_TOKENS)


def _client(node, address=None):
    headers = {"Authorization": f"Bearer {node.api_keys[address]}"} if address else {}
    return node.client(**headers)


def _call(client, node, **extra):
    return client.post("/v1/completions", json={
        "model": node.model_id, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "seed": 1, **extra,
    })


def _balance(client, address) -> int:
    return client.get(f"/credits/{address}").json()["balance"]


def test_required_keys_refuse_callers_without_one_even_locally(node):
    with node.client() as anonymous:
        reply = _call(anonymous, node)
        assert reply.status_code == 401
        assert "API key is required" in error_reason(reply)
        assert reply.headers["www-authenticate"] == "Bearer"
    with node.client(Authorization="Bearer psk_" + "A" * 43) as forged:
        assert _call(forged, node).status_code == 401
    with node.client(Authorization="Bearer sk-anything") as placeholder:
        assert _call(placeholder, node).status_code == 401


def test_too_little_credit_is_402_with_the_amount_needed_and_charges_nothing(node, needed):
    with _client(node, BROKE) as client:
        reply = _call(client, node)
        assert reply.status_code == 402, reply.text
        body = reply.json()
        assert body["needed"] == needed and body["balance"] == 0
        assert str(needed) in error_reason(reply)
        assert _balance(client, BROKE) == 0
        info = client.get("/herder/info").json()
        assert (info["base_fee"], info["token_fee"], info["pricing"]) == (FEE_BASE, FEE_TOKEN, True)


def test_a_paid_call_is_charged_and_recorded_with_its_fee(node, needed):
    with _client(node, PAYER) as client:
        credited = client.post(f"/credits/{PAYER}", json={"amount": 10 * needed})
        assert credited.status_code == 200, credited.text
        notice = credited.json()["credit_notice"]
        assert credited.json()["balance"] == 10 * needed
        reply = _call(client, node)
        assert reply.status_code == 200, reply.text
        assert reply.json()["fee"] == needed  # empty queue, last multiplier 1: the bare price
        assert _balance(client, PAYER) == 9 * needed
        message = reply.json()["record"]["message"]
    # The Credit-Notice and the Message are signed records in the store.
    from inference.models import tag_dict

    notice_tags = tag_dict(node.store.info(notice))
    assert (notice_tags["Type"], notice_tags["Recipient"], notice_tags["Quantity"]) == (
        "Credit-Notice", PAYER, str(10 * needed))
    stored = node.service.inference.records.load(message, MessageRecord.type)
    assert stored.record.fee == needed and stored.record.caller == PAYER


def test_paying_more_sets_the_multiplier_and_the_next_quote(node, needed):
    with _client(node, PAYER) as client:
        before = _balance(client, PAYER)
        reply = _call(client, node, payment=2 * needed)
        assert reply.status_code == 200, reply.text
        assert reply.json()["fee"] == 2 * needed
        assert _balance(client, PAYER) == before - 2 * needed
        assert client.get("/herder/info").json()["last_multiplier"] == 2.0
        # Under the needed fee: refused, nothing taken.
        low = _call(client, node, payment=needed - 1)
        assert low.status_code == 402
        assert low.json()["needed"] == needed
        assert low.json()["quote"] == 2 * needed  # needed x last multiplier, queue empty
        assert _balance(client, PAYER) == before - 2 * needed
        # Paying the quote by default.
        default = _call(client, node)
        assert default.json()["fee"] == 2 * needed
        bad = _call(client, node, payment="lots")
        assert bad.status_code == 400


def test_concurrent_calls_never_overdraw_one_balance(node, needed):
    affordable = 4
    with _client(node, RACER) as client:
        client.post(f"/credits/{RACER}", json={"amount": affordable * needed})
    statuses: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def call():
        with _client(node, RACER) as client:
            start.wait()
            reply = _call(client, node, payment=needed)
            with lock:
                statuses.append(reply.status_code)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(statuses) == [200] * affordable + [402] * (10 - affordable)
    with _client(node, RACER) as client:
        assert _balance(client, RACER) == 0


def test_crediting_is_for_this_machine_and_positive_amounts_only(node):
    with node.client() as client:
        assert client.post(f"/credits/{PAYER}", json={"amount": 0}).status_code == 400
        assert client.post(f"/credits/{PAYER}", json={"amount": -5}).status_code == 400
        assert client.post(f"/credits/{PAYER}", json={"amount": "5"}).status_code == 400
        assert client.post("/credits/not-an-address", json={"amount": 5}).status_code == 400


def test_a_client_that_leaves_a_stream_early_is_still_recorded_and_charged(node, needed):
    import json
    import time

    with _client(node, PAYER) as client:
        client.post(f"/credits/{PAYER}", json={"amount": 5 * needed})
        before = _balance(client, PAYER)
        with client.stream("POST", "/v1/completions", json={
            "model": node.model_id, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "stream": True,
            "payment": needed,
        }) as reply:
            assert reply.status_code == 200
            first = next(line for line in reply.iter_lines() if line)
        # Gone after one chunk; the chunk ID names the Message.
        message = json.loads(first.removeprefix("data: "))["id"].removeprefix("cmpl-")
        deadline = time.monotonic() + 60
        while (result := client.get(f"/results/{message}")).status_code == 404:
            assert time.monotonic() < deadline, "the abandoned call was never recorded"
            time.sleep(0.05)
        assert result.json()["finish_reason"] in ("stop", "length")
        assert _balance(client, PAYER) == before - needed


def test_amounts_beyond_the_ledger_are_refused_not_crashed(node):
    with _client(node, PAYER) as client:
        before = _balance(client, PAYER)
        huge_tokens = _call(client, node, max_tokens=10**20)
        assert huge_tokens.status_code == 400 and "max_tokens must be" in error_reason(huge_tokens)
        huge_payment = _call(client, node, payment=10**30)
        assert huge_payment.status_code == 400
        assert _balance(client, PAYER) == before
