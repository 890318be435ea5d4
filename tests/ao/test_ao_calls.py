"""AO calls on a real node, raw items posted to the MU: what is recorded, once, how the CU answers
(result waits for the call, results pages, dry-runs write nothing), failed calls and fees."""

from __future__ import annotations

import json
import os
import signal
import threading

import httpx
import pytest

from gateway.routes import ao as ao_routes
from inference import records
from tests.ao.conftest import PUBLIC_URL, inference_tags, item_id, post_item, serve, spawned


def _records_of(node, kind: str) -> list[str]:
    """The node's records of a type (AO's own items carry Type: Process / Message too)."""
    return node.service.inference.records.query_ids([("Type", [kind]), ("App-Name", [records.APP_NAME])])


def _message_record(node, ao_message: str) -> records.MessageRecord:
    book = node.service.inference.records
    [record_id] = book.query_ids([("Type", ["Message"]), ("Request", [ao_message])])
    return book.load(record_id, "Message").record


def _send(node, caller, process, text=b"hello", tags=None) -> str:
    raw = caller.message(process, tags or inference_tags(), text)
    with node.client() as client:
        reply = post_item(client, raw)
    assert reply.status_code == 202, reply.text
    return item_id(raw)


def _result(node, message: str, process: str) -> dict:
    with node.client() as client:
        reply = client.get(f"/ao/cu/result/{message}", params={"process-id": process})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_get_ao_names_the_units_at_the_public_url(node):
    with node.client() as client:
        info = client.get("/ao").json()
    assert info["mu"] == f"{PUBLIC_URL}/ao/mu" and info["cu"] == f"{PUBLIC_URL}/ao/cu"
    assert info["scheduler"] == node.node_address and info["scheduler_location"]
    module = node.store.info(info["module"])
    tags = {t.name.decode(): t.value.decode() for t in module.tags}
    assert module.owner_address == node.node_address
    assert {k: tags[k] for k in ("Data-Protocol", "Type", "Module-Format", "Input-Encoding", "Output-Encoding")} == {
        "Data-Protocol": "ao", "Type": "Module", "Module-Format": "llama.cpp-gguf", "Input-Encoding": "UTF-8",
        "Output-Encoding": "JSON-1"}
    location = {t.name.decode(): t.value.decode() for t in node.store.info(info["scheduler_location"]).tags}
    assert location["Url"] == PUBLIC_URL and location["Type"] == "Scheduler-Location"


def test_the_spawn_item_is_bound_to_one_process_record_however_often_posted(node, caller):
    raw = caller.spawn(node.units["module"], node.units["scheduler"],
                       [("Model", node.model_id), ("Chat-Template", "none"), ("N-Ctx", "128")], b"Be brief.")
    before = len(_records_of(node, "Process"))
    with node.client() as client:
        replies = [post_item(client, raw) for _ in range(3)]
        replies.append(post_item(client, raw, "/ao/mu/"))  # a trailing slash is the same MU
    assert [r.status_code for r in replies] == [202] * 4
    assert len(_records_of(node, "Process")) == before + 1
    book = node.service.inference.records
    [pid] = book.query_ids([("Type", ["Process"]), ("Request", [item_id(raw)])])
    process = book.load(pid, "Process")
    assert process.owner_address == node.node_address
    assert process.record.request == item_id(raw) and process.record.system_prompt == "Be brief."
    assert process.record.chat_template is None and process.record.settings["n_ctx"] == 128
    assert node.store.info(item_id(raw)).owner_address == caller.address  # the spawn itself is kept


def test_a_message_is_recorded_once_with_the_scheduler_nonce_and_chain(node, caller):
    process = spawned(node, caller, [("Model", node.model_id), ("Chat-Template", "none")], b"Be brief.")
    raw = caller.message(process, inference_tags(5, 11), b"tell me")
    with node.client() as client:
        replies = []
        threads = [threading.Thread(target=lambda: replies.append(post_item(client, raw))) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(r.status_code for r in replies) == [202] * 4
    body = _result(node, item_id(raw), process)  # answered once its Message and Result are durable
    message = _message_record(node, item_id(raw))  # exactly one
    assert message.nonce == 1 and message.previous is None and message.caller == caller.address
    assert message.input == {"prompt": "tell me"} and message.rendered_prompt == "Be brief.\ntell me"
    assert message.sampling["seed"] == 11 and message.sampling["max_tokens"] == 5
    assert body["Output"]["nonce"] == 1 and body["Output"]["usage"]["completion_tokens"] <= 5
    assert body["Messages"][0]["Target"] == caller.address and body["Messages"][0]["Data"] == body["Output"]["data"]
    second = _send(node, caller, process, b"and again")
    _result(node, second, process)
    assert _message_record(node, second).nonce == 2
    assert _message_record(node, second).previous == body["Output"]["record"]["message"]


def test_a_chat_process_sends_the_text_as_the_user_message(node, caller):
    process = spawned(node, caller, [("Model", node.model_id), ("System-Prompt", "You help.")])
    message = _send(node, caller, process, b"hi there")
    assert _result(node, message, process)["Output"]["data"] is not None
    record = _message_record(node, message)
    assert record.input == {"messages": [{"role": "user", "content": "hi there"}]} and record.parse_special
    assert "You help." in record.rendered_prompt and "hi there" in record.rendered_prompt


def test_result_and_results_errors_are_json_the_client_reads(node, caller):
    process = spawned(node, caller)
    message = _send(node, caller, process)
    other = spawned(node, caller)
    with node.client() as client:
        wrong = client.get(f"/ao/cu/result/{message}", params={"process-id": other})
        unknown = client.get(f"/ao/cu/results/{'A' * 43}", params={"sort": "ASC"})
        bad_sort = client.get(f"/ao/cu/results/{process}", params={"sort": "UP"})
        bad_cursor = client.get(f"/ao/cu/results/{process}", params={"from": "1.5"})
        bad_id = client.get(f"/ao/cu/result/{message}", params={"process-id": "x"})
    assert wrong.status_code == 404 and "was not sent to process" in wrong.json()["error"]
    assert unknown.status_code == 404 and unknown.json()["edges"] == []
    assert bad_sort.status_code == 400 and bad_sort.json()["edges"] == [] and "sort" in bad_sort.json()["error"]
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.json()["error"]
    assert bad_id.status_code == 400 and "not a process ID" in bad_id.json()["error"]


def test_results_pages_by_nonce_both_ways(node, caller):
    process = spawned(node, caller)
    ids = [_send(node, caller, process, f"message {n}".encode(), inference_tags(3, n)) for n in range(1, 6)]
    texts = [_result(node, m, process)["Output"]["data"] for m in ids]

    def page(**params):
        with node.client() as client:
            return client.get(f"/ao/cu/results/{process}", params=params).json()

    assert [e["cursor"] for e in page(sort="ASC")["edges"]] == ["1", "2", "3", "4", "5"]
    assert [e["node"]["Output"]["data"] for e in page(sort="ASC")["edges"]] == texts
    first = page(sort="ASC", limit=2)
    assert [e["cursor"] for e in first["edges"]] == ["1", "2"] and first["pageInfo"]["hasNextPage"]
    assert [e["cursor"] for e in page(sort="ASC", limit=2, **{"from": "2"})["edges"]] == ["3", "4"]
    assert [e["cursor"] for e in page(sort="ASC", **{"from": "1", "to": "3"})["edges"]] == ["2", "3"]
    assert [e["cursor"] for e in page(sort="DESC", limit=2)["edges"]] == ["5", "4"]
    last = page(sort="DESC", limit=2, **{"from": "2"})
    assert [e["cursor"] for e in last["edges"]] == ["1"] and not last["pageInfo"]["hasNextPage"]
    assert [e["cursor"] for e in page(sort="DESC", **{"to": "4"})["edges"]] == ["5", "4"]


def test_a_dry_run_runs_the_model_and_writes_nothing(node, caller):
    process = spawned(node, caller)
    message = _send(node, caller, process, b"same words", inference_tags(4, 21))
    recorded = _result(node, message, process)
    before = {kind: len(_records_of(node, kind)) for kind in ("Process", "Message", "Result")}
    objects = node.store.query(node_query()).items
    body = {"Id": "1234", "Target": process, "Owner": "1234", "Anchor": "0", "Data": "same words",
            "Tags": [*({"name": n, "value": v} for n, v in inference_tags(4, 21)),
                     {"name": "Data-Protocol", "value": "ao"}, {"name": "Type", "value": "Message"}]}
    with node.client() as client:
        dry = client.post("/ao/cu/dry-run", params={"process-id": process}, json=body).json()
        info = client.post("/ao/cu/dry-run", params={"process-id": process},
                           json={"Target": process, "Tags": [{"name": "Action", "value": "Info"}]}).json()
        mismatch = client.post("/ao/cu/dry-run", params={"process-id": process}, json={**body, "Target": "B" * 43})
    assert dry["Output"]["data"] == recorded["Output"]["data"] and dry["Output"]["record"] is None
    assert dry["GasUsed"] == recorded["GasUsed"] and dry["Messages"][0]["Target"] == "1234"
    assert info["Output"]["owner"] == caller.address and info["Output"]["model"] == node.model_id
    assert mismatch.status_code == 400 and "is not the process-id" in mismatch.json()["error"]
    assert {kind: len(_records_of(node, kind)) for kind in ("Process", "Message", "Result")} == before
    assert len(node.store.query(node_query()).items) == len(objects)


def node_query():
    from permastore.store.records import Query

    return Query(first=1000)


def test_dry_runs_beyond_the_slots_get_429(node, caller):
    process = spawned(node, caller)
    units = node.app.state.ao_units
    slots = units.dry_runs._slots
    taken = [slots.acquire(blocking=False) for _ in range(2)]
    try:
        with node.client() as client:
            reply = client.post("/ao/cu/dry-run", params={"process-id": process},
                                json={"Tags": [{"name": "Action", "value": "Inference"}], "Data": "hi"})
    finally:
        for held in taken:
            if held:
                slots.release()
    assert all(taken)
    assert reply.status_code == 429 and "Rate limit exceeded" in reply.json()["error"]


@pytest.fixture(scope="module")
def hanging_node(tmp_path_factory):
    """A paid node whose calls time out after 2 s with no retry (its worker is stopped by the test)."""
    server = serve(tmp_path_factory.mktemp("ao-hang") / "data",
                   {"workers": 1, "fee_base": 10, "fee_token": 1, "call_timeout_s": 2, "retries": 0})
    yield server
    server.stop()


def test_a_failed_call_answers_error_after_waiting_refunds_and_is_left_out_of_results(hanging_node, caller,
                                                                                       monkeypatch):
    node = hanging_node
    monkeypatch.setattr(ao_routes, "KEEPALIVE_S", 0.2)
    process = spawned(node, caller)
    with node.client() as client:
        client.post(f"/credits/{caller.address}", json={"amount": 10_000})
    good = _send(node, caller, process, b"first")
    assert "Error" not in _result(node, good, process)
    with node.client() as client:
        balance = client.get(f"/credits/{caller.address}").json()["balance"]
    [victim] = node.service.pool.worker_pids()
    os.kill(victim, signal.SIGSTOP)
    failing = _send(node, caller, process, b"second")
    with httpx.Client(base_url=node.url, timeout=60) as client:
        with client.stream("GET", f"/ao/cu/result/{failing}", params={"process-id": process}) as reply:
            assert reply.status_code == 200
            raw = reply.read()
    assert raw.startswith(b" ")  # kept alive while the call ran, then the answer
    body = json.loads(raw)
    assert "timed out" in body["Error"] and body["Messages"] == [] and body["GasUsed"] == 0
    assert _result(node, failing, process) == body  # the same answer from the failure Result
    with node.client() as client:
        assert client.get(f"/credits/{caller.address}").json()["balance"] == balance  # refunded
        page = client.get(f"/ao/cu/results/{process}", params={"sort": "ASC"}).json()
    assert [e["cursor"] for e in page["edges"]] == ["1"]  # the failed nonce 2 is left out


def test_a_dry_run_from_another_machine_does_not_run_the_model(node, caller):
    process = spawned(node, caller)
    units = node.app.state.ao_units
    before = node.service.pool.info()
    body = {"Target": process, "Data": "hi", "Tags": [{"name": "Action", "value": "Inference"}]}
    answer = units.dry_run(process, body, local=False)  # what the route passes for a non-loopback peer
    assert "only for callers on this node's machine" in answer["Error"] and answer["Messages"] == []
    assert node.service.pool.info()["queue_length"] == before["queue_length"]
