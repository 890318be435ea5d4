"""Workers under the HTTP API, through real llama.cpp: a worker killed mid-call is replaced and
the call retried; a hung worker hits the timeout and the call is refunded; the caller is always
answered. Fees are on so that charges and refunds are visible."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from inference.keys import KeyStore
from tests.inference.conftest import error_reason
from tests.inference.inference_server import start_server

CALLER = "CALLER" + "x" * 36 + "A"  # a canonical b64url address


def _node(tmp_path, tiny_gguf, **herder):
    data = tmp_path / "data"
    data.mkdir(parents=True)
    keys = KeyStore.open(data)
    key = keys.create(CALLER)
    keys.close()
    server = start_server(data, herder={"fee_base": 10, "fee_token": 1, "workers": 1, **herder})
    server.model_id = server.add_model(tiny_gguf)
    server.key = key
    return server


def _request(node, client, **extra):
    return client.post("/v1/completions", json={
        "model": node.model_id, "prompt": "hello", "max_tokens": 8, "seed": 2, **extra,
    })


def _background(node, client):
    """Start a call on another thread; return (thread, list that gets the reply)."""
    replies = []
    thread = threading.Thread(target=lambda: replies.append(_request(node, client)))
    thread.start()
    return thread, replies


def _wait_busy(node, timeout=30.0):
    deadline = time.monotonic() + timeout
    while node.service.info()["workers_busy"] == 0:
        assert time.monotonic() < deadline, "the call was never dispatched"
        time.sleep(0.01)


@pytest.fixture
def retrying(tmp_path, tiny_gguf):
    node = _node(tmp_path, tiny_gguf, call_timeout_s=3, retries=1)
    yield node
    node.stop()


@pytest.fixture
def not_retrying(tmp_path, tiny_gguf):
    node = _node(tmp_path, tiny_gguf, call_timeout_s=2, retries=0)
    yield node
    node.stop()


def _warm(node, client):
    client.post(f"/credits/{CALLER}", json={"amount": 1000})
    warm = _request(node, client)  # starts the service and loads the model in the worker
    assert warm.status_code == 200, warm.text
    return warm.json()


def test_a_worker_killed_mid_call_is_replaced_and_the_call_retried(retrying):
    node = retrying
    with node.client(Authorization=f"Bearer {node.key}") as client:
        expected = _warm(node, client)
        balance = client.get(f"/credits/{CALLER}").json()["balance"]
        [victim] = node.service.pool.worker_pids()
        os.kill(victim, signal.SIGSTOP)  # it takes the call and sits on it...
        thread, replies = _background(node, client)
        _wait_busy(node)
        os.kill(victim, signal.SIGKILL)  # ...and dies mid-call
        thread.join(120)
        [reply] = replies
        assert reply.status_code == 200, reply.text
        # Same seed, same prompt: the retried call's output is the deterministic one.
        assert reply.json()["choices"][0]["text"] == expected["choices"][0]["text"]
        assert victim not in node.service.pool.worker_pids()
        assert node.service.info()["worker_restarts"] >= 1
        # Charged once, not twice.
        assert client.get(f"/credits/{CALLER}").json()["balance"] == balance - reply.json()["fee"]


def test_a_hung_worker_is_retried_on_a_fresh_one_within_the_timeout(retrying):
    node = retrying
    with node.client(Authorization=f"Bearer {node.key}") as client:
        _warm(node, client)
        [victim] = node.service.pool.worker_pids()
        os.kill(victim, signal.SIGSTOP)
        started = time.monotonic()
        reply = _request(node, client)
        assert reply.status_code == 200, reply.text
        assert time.monotonic() - started >= 3  # waited out the hung attempt
        assert victim not in node.service.pool.worker_pids()


def test_a_hung_worker_hits_the_timeout_and_the_call_is_refunded(not_retrying):
    node = not_retrying
    with node.client(Authorization=f"Bearer {node.key}") as client:
        _warm(node, client)
        balance = client.get(f"/credits/{CALLER}").json()["balance"]
        [victim] = node.service.pool.worker_pids()
        os.kill(victim, signal.SIGSTOP)
        reply = _request(node, client)
        assert reply.status_code == 504
        assert "timed out after 2 s" in error_reason(reply)
        assert client.get(f"/credits/{CALLER}").json()["balance"] == balance
        # The Message is answered by a failure Result, so no recorded call is left open.
        owner = node.service.node_address
        book = node.service.inference.records
        [message_id] = [
            mid for mid in book.query_ids([("Type", ["Message"])])
            if book.find_result_for(mid, owner) is not None
            and book.load(book.find_result_for(mid, owner)).record.finish_reason == "error"
        ]
        failure = client.get(f"/results/{message_id}").json()
        assert failure["finish_reason"] == "error" and "timed out" in failure["timings"]["error"]
        # The node keeps serving: a fresh worker took the hung one's place.
        assert _request(node, client).status_code == 200
        assert victim not in node.service.pool.worker_pids()


def test_a_stream_whose_worker_dies_ends_with_an_error_event_and_a_refund(not_retrying):
    node = not_retrying
    with node.client(Authorization=f"Bearer {node.key}") as client:
        _warm(node, client)
        balance = client.get(f"/credits/{CALLER}").json()["balance"]
        [victim] = node.service.pool.worker_pids()
        os.kill(victim, signal.SIGSTOP)
        killer = threading.Timer(0.5, lambda: os.kill(victim, signal.SIGKILL))
        killer.start()
        with client.stream("POST", "/v1/completions", json={
            "model": node.model_id, "prompt": "hello", "max_tokens": 8, "stream": True,
        }) as reply:
            assert reply.status_code == 200
            lines = [line for line in reply.iter_lines() if line]
        killer.join()
        assert lines[-1] == "data: [DONE]"
        assert '"error"' in lines[-2] and "worker died" in lines[-2]
        assert client.get(f"/credits/{CALLER}").json()["balance"] == balance
