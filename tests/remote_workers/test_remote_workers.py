"""A head with `--workers 0` answered by worker nodes over HTTP: signed leases, allowed wallets only,
Results signed by the worker and replayable from the records alone."""

from __future__ import annotations

import json
import subprocess

import httpx

from permastore.protocol import ans104
from permastore.store import Store
from tests.remote_workers.conftest import PERMASTORE, worker_named


def test_worker_node_answers_calls_for_a_head_with_no_local_workers(herd):
    address = herd.wallet("w1")
    herd.start_head("--workers", "0", "--allow-worker", address, "--verify-fraction", "0")
    herd.start_worker("w1")
    assert herd.info()["workers"] == 0
    answers = [herd.complete(f"hello {n}") for n in range(3)]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    records = [answer.json()["record"] for answer in answers]  # the caller gets its record IDs
    info = herd.wait_for(lambda i: (worker_named(i, address) or {}).get("calls_done") == 3, "3 calls done")
    assert info["leases"]["live"] == 0 and info["queue_length"] == 0
    herd.stop()  # the records alone from here on

    head = Store.open(herd.tmp / "head")
    try:
        result = json.loads(b"".join(head.read(records[0]["result"])))
        assert head.info(records[0]["result"]).owner_address != address  # the owner's Result, signed by the head
        worker_result = result["timings"]["worker_result"]
        assert result["timings"]["worker"] == address
        stored = head.info(worker_result)
        assert stored.owner_address == address  # the worker's own signed Result is kept on the head
        theirs = json.loads(b"".join(head.read(worker_result)))
        assert theirs["token_ids"] == result["token_ids"] and theirs["message"] == records[0]["message"]
    finally:
        head.close()
    # Replay from the records alone, on the head's data folder: the head's Result and the worker's.
    for record_id in (records[0]["result"], worker_result, records[2]["message"]):
        done = subprocess.run([str(PERMASTORE), "replay", record_id, "--data", str(herd.tmp / "head")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "identical" in done.stdout


def test_a_worker_not_allowed_is_refused_and_gets_no_call(herd):
    allowed = herd.wallet("allowed")
    head = herd.start_head("--workers", "0", "--allow-worker", allowed, "--lease-ttl", "5")
    stranger = herd.start_worker("stranger")
    deadline_info = herd.wait_for(lambda i: True, "info")
    assert stranger.address not in deadline_info["allowed_workers"]
    # A signed lease request from the stranger's wallet is refused with 403 and a reason.
    intruder = Store.open(herd.tmp / "intruder")
    try:
        from inference.herder.leases import sign_request

        item = sign_request(intruder.signer, deadline_info["head_address"], {"wait_s": 0})
        refused = httpx.post(f"{head.url}/herder/lease", content=item,
                             headers={"Content-Type": "application/octet-stream"}, timeout=30)
        assert refused.status_code == 403 and "not allowed" in refused.json()["error"]
        # The same request sent again is refused as used (before the allow-list is even looked at).
        again = httpx.post(f"{head.url}/herder/lease", content=item,
                           headers={"Content-Type": "application/octet-stream"}, timeout=30)
        assert again.status_code == 409
        # A request addressed to another head is refused.
        other = sign_request(intruder.signer, intruder_address(intruder), {"wait_s": 0})
        wrong = httpx.post(f"{head.url}/herder/lease", content=other,
                           headers={"Content-Type": "application/octet-stream"}, timeout=30)
        assert wrong.status_code == 403 and "not addressed to this head" in wrong.json()["error"]
        # Not signed at all: 400.
        garbage = httpx.post(f"{head.url}/herder/lease", content=b"{}", timeout=30)
        assert garbage.status_code == 400
    finally:
        intruder.close()
    # The stranger's worker process keeps being refused; no call reaches it. With no allowed worker
    # asking for calls (and no local slot), the call is answered 503 after 3 lease TTLs, not kept.
    answer = herd.complete("x", max_tokens=4)
    # /v1 answers OpenAI's error shape.
    assert answer.status_code == 503 and "no worker took the call" in answer.json()["error"]["message"]
    info = herd.info()
    assert worker_named(info, stranger.address) is None
    assert info["queue_length"] == 0
    assert "refused the lease request: 403" in stranger.log()


def intruder_address(store) -> str:
    from permastore.protocol.wallet import address_of

    return address_of(store.signer.owner)


def test_a_second_result_for_a_lease_is_refused(herd):
    address = herd.wallet("w1")
    herd.start_head("--workers", "0", "--allow-worker", address, "--verify-fraction", "0")
    store = Store.open(herd.tmp / "w1")  # act as the worker by hand, with its wallet
    try:
        from inference.herder.remote_worker import WorkerNode

        node = WorkerNode(_Context(store), herd.head.url)
        node.head_address = herd.info()["head_address"]
        import threading

        caller = threading.Thread(target=herd.complete, daemon=True)
        caller.start()
        grant = node.lease()
        assert grant is not None and grant["kind"] == "call"
        call = grant["call"]
        assert isinstance(call["sampling"]["seed"], int) and call["message_id"]
        # A Result that answers another call is refused (422) and the lease stays live.
        from inference.generation import Generation
        from inference.herder.remote_results import result_record
        from inference.processes import PreparedCall

        prepared = PreparedCall.from_json(call)
        generation = Generation("hi", (1, 2), 3, "x", "length", {})
        wrong = dict(call, nonce=call["nonce"] + 1)
        item = node.inference.records.sign(result_record(PreparedCall.from_json(wrong), generation)).item
        url = f"/herder/leases/{grant['lease']}/result"
        refused = node.link.post(url, item)
        assert refused.status_code == 422, refused.text
        first = node.inference.records.sign(result_record(prepared, generation)).item
        assert node.link.post(url, first).status_code == 200
        second = node.inference.records.sign(result_record(prepared, Generation("ho", (3,), 3, "x", "length", {}))).item
        late = node.link.post(url, second)
        assert late.status_code == 409  # never answered twice
        caller.join(60)
        assert ans104.parse_header(first).owner_address == address
    finally:
        store.close()


class _Context:
    """Just what WorkerNode needs to sign, for driving the lease protocol by hand."""

    def __init__(self, store):
        from inference.records import RecordStore

        self.store = store
        self.records = RecordStore(store, None)


def test_replay_over_http_on_a_head_without_local_workers_is_refused_not_hung(herd):
    address = herd.wallet("w1")
    herd.start_head("--workers", "0", "--allow-worker", address, "--verify-fraction", "0")
    herd.start_worker("w1")
    answer = herd.complete("replay me")
    assert answer.status_code == 200, answer.text
    replay = httpx.post(f"{herd.head.url}/replay/{answer.json()['record']['result']}", timeout=120)
    assert replay.status_code == 503 and "no local workers" in replay.json()["error"]
