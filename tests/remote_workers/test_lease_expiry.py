"""A worker killed mid-call: its lease lapses; the call is run by another worker (the caller sees one
answer), or, when text was already streamed to the caller, answered with an error and refunded."""

from __future__ import annotations

import signal
import threading

import httpx

from tests.remote_workers.conftest import worker_named


def _held_by(herd, address: str) -> dict:
    return herd.wait_for(lambda i: any(lease["worker"] == address for lease in i["leases"]["held"]),
                         f"a lease held by {address}")


def test_a_worker_killed_mid_call_loses_its_lease_and_another_worker_answers(herd):
    stalling, honest = herd.wallet("stalling"), herd.wallet("honest")
    herd.start_head("--workers", "0", "--allow-worker", stalling, "--allow-worker", honest,
                    "--lease-ttl", "5", "--verify-fraction", "0")
    staller = herd.start_worker("stalling", mode="stalling")
    herd.wait_for(lambda i: worker_named(i, stalling) is not None, "the stalling worker asking for calls")
    answers: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: answers.append(herd.complete("retry me", max_tokens=6)))
    caller.start()
    _held_by(herd, stalling)
    herd.start_worker("honest")
    herd.wait_for(lambda i: worker_named(i, honest) is not None, "the honest worker asking for calls")
    staller.stop(signal.SIGKILL)  # mid-call: its heartbeats stop
    caller.join(120)
    assert len(answers) == 1 and answers[0].status_code == 200, answers and answers[0].text
    info = herd.info()
    # (at least one: on a loaded machine a late heartbeat may lapse a lease before the kill, too)
    assert info["leases"]["expired"] >= 1 and info["leases"]["live"] == 0
    assert worker_named(info, stalling)["leases_expired"] >= 1
    assert worker_named(info, honest)["calls_done"] == 1
    assert worker_named(info, stalling)["calls_done"] == 0
    # The one Result of the message is the honest worker's run.
    record = answers[0].json()["record"]
    result = httpx.get(f"{herd.head.url}/{record['result']}", timeout=30).json()
    assert result["timings"]["worker"] == honest


def test_a_call_whose_text_was_streamed_is_refunded_when_its_worker_dies(herd):
    partial = herd.wallet("partial")
    head = herd.start_head("--workers", "0", "--allow-worker", partial, "--lease-ttl", "5",
                           "--verify-fraction", "0", "--fee-base", "5")
    payer = herd.info()["head_address"]  # a keyless local caller pays from the node's address
    assert httpx.post(f"{head.url}/credits/{payer}", json={"amount": 100}, timeout=30).status_code == 200
    worker = herd.start_worker("partial", mode="partial")
    herd.wait_for(lambda i: worker_named(i, partial) is not None, "the worker asking for calls")
    body = {"model": herd.model_id, "prompt": "stream me", "max_tokens": 4, "stream": True}
    pieces: list[str] = []
    with httpx.stream("POST", f"{head.url}/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            pieces.append(line)
            if "partial" in line and worker.process.poll() is None:
                worker.stop(signal.SIGKILL)  # the caller has seen text: no invisible retry is possible
    stream = "\n".join(pieces)
    assert "partial" in stream and "error" in stream, stream
    info = herd.wait_for(lambda i: i["leases"]["expired"] >= 1 and i["leases"]["live"] == 0, "the lease to lapse")
    assert info["queue_length"] == 0
    balance = httpx.get(f"{head.url}/credits/{payer}", timeout=30).json()["balance"]
    assert balance == 100  # reserved, then refunded: the call was not answered
