"""Bad spawns and messages posted raw to the MU: each gets a 4xx JSON error as AO's MU answers
(`{"error": ...}`), never a 500, and nothing is stored, recorded or charged. Real server, real store."""

from __future__ import annotations

import pytest

from tests.ao.conftest import OCTET, inference_tags, item_id, post_item, spawned


def _message_records(node) -> int:
    return len(node.service.inference.records.query_ids([("Type", ["Message"]), ("App-Name", ["permastore-llama"])]))


def _refused(node, raw: bytes, status: int, reason: str) -> None:
    """Post raw to the MU; assert the status and reason, that the item was not stored and no call recorded."""
    before = _message_records(node)
    with node.client() as client:
        reply = post_item(client, raw)
    assert reply.status_code == status, reply.text
    assert reason in reply.json()["error"]
    assert node.store.info(item_id(raw)) is None
    assert _message_records(node) == before


@pytest.fixture(scope="module")
def process(node, caller):
    return spawned(node, caller)


def test_a_tampered_message_is_refused(node, caller, process):
    raw = bytearray(caller.message(process, inference_tags(), b"hello"))
    raw[-1] ^= 0x01  # the data no longer matches the signature
    _refused(node, bytes(raw), 400, "not a valid signed ANS-104 data item")


def test_a_tampered_spawn_is_refused(node, caller):
    raw = bytearray(caller.spawn(node.units["module"], node.units["scheduler"], [("Model", node.model_id)]))
    raw[600] ^= 0x01  # inside the signature
    _refused(node, bytes(raw), 400, "not a valid signed ANS-104 data item")


def test_garbage_and_empty_bodies_are_refused(node):
    with node.client() as client:
        assert post_item(client, b"").status_code == 400
        reply = post_item(client, b"\x01\x00" + b"x" * 100)
    assert reply.status_code == 400 and "not a valid signed ANS-104 data item" in reply.json()["error"]


@pytest.mark.parametrize("tags, reason", [
    ([("Max-Tokens", "4")], "needs an Action tag"),
    ([("Action", "Eval")], "unknown Action 'Eval'"),
    ([("Action", "Inference"), ("Seed", "one")], "tag Seed must be an integer"),
    ([("Action", "Inference"), ("Temperature", "nan")], "tag Temperature must be a number"),
    ([("Action", "Inference"), ("Max-Tokens", "0")], "max_tokens must be an integer in 1.."),
    ([("Action", "Inference"), ("Top-P", "2")], "top_p must be in (0, 1]"),
    ([("Action", "Inference"), ("Payment", "-1")], "tag Payment must be a non-negative integer"),
])
def test_messages_with_bad_or_missing_tags_are_refused(node, caller, process, tags, reason):
    _refused(node, caller.message(process, tags, b"hello"), 400, reason)


@pytest.mark.parametrize("data, reason", [
    (b" ", "needs the user's text"),
    (b"\xff\xfe", "must be UTF-8 text"),
    (b"word " * 5000, "prompt is"),  # longer than the process's context
])
def test_messages_with_bad_data_are_refused(node, caller, process, data, reason):
    _refused(node, caller.message(process, inference_tags(), data), 400, reason)


def test_a_message_to_an_unknown_process_is_404(node, caller):
    _refused(node, caller.message("A" * 43, inference_tags(), b"hello"), 404, "is not known here")


def test_a_message_to_an_item_that_is_not_a_process_is_refused(node, caller):
    # The node's own Module record is stored here, but it is no process.
    _refused(node, caller.message(node.units["module"], inference_tags(), b"hello"), 400, "is not a llama process")


def test_a_message_to_another_modules_process_is_refused(node, caller, stranger):
    aos_spawn = stranger.spawn("M" * 43, node.units["scheduler"], [("Name", "an aos process")])
    with node.client() as client:  # anyone may store an item through the gateway; it stays someone else's
        assert client.post("/tx", content=aos_spawn, headers=OCTET).status_code == 200
    _refused(node, caller.message(item_id(aos_spawn), inference_tags(), b"hello"), 400,
             "is not a llama process: it runs module " + "M" * 43)


def test_a_message_to_a_spawn_that_never_went_through_the_mu_is_404(node, caller):
    raw = caller.spawn(node.units["module"], node.units["scheduler"], [("Model", node.model_id)])
    with node.client() as client:
        assert client.post("/tx", content=raw, headers=OCTET).status_code == 200
    _refused(node, caller.message(item_id(raw), inference_tags(), b"hello"), 404,
             "was not spawned through this node's MU")


@pytest.mark.parametrize("change, status, reason", [
    (lambda n: ("M" * 43, n.units["scheduler"], [("Model", n.model_id)]), 400, "is not this node's llama module"),
    (lambda n: (n.units["module"], "S" * 43, [("Model", n.model_id)]), 400, "is not this node"),
    (lambda n: (n.units["module"], n.units["scheduler"], []), 400, "needs a Model tag"),
    (lambda n: (n.units["module"], n.units["scheduler"], [("Model", "tiny:latest")]), 404, "model 'tiny:latest' not found"),
    (lambda n: (n.units["module"], n.units["scheduler"], [("Model", "Q" * 43)]), 404, "is not stored here"),
    (lambda n: (n.units["module"], n.units["scheduler"], [("Model", n.model_id), ("Chat-Template", "nope")]),
     400, "unknown chat template 'nope'"),
    (lambda n: (n.units["module"], n.units["scheduler"], [("Model", n.model_id), ("N-Ctx", "lots")]),
     400, "tag N-Ctx must be an integer"),
    (lambda n: (n.units["module"], n.units["scheduler"], [("Model", n.model_id), ("N-Ctx", "500000")]),
     400, "n_ctx must be at most"),
    (lambda n: (n.units["module"], n.units["scheduler"], [("Model", n.model_id), ("Flash-Attn", "yes")]),
     400, "tag Flash-Attn must be true or false"),
])
def test_bad_spawns_are_refused(node, caller, change, status, reason):
    module, scheduler, tags = change(node)
    before = len(node.service.inference.records.query_ids([("Type", ["Process"]), ("App-Name", ["permastore-llama"])]))
    _refused(node, caller.spawn(module, scheduler, tags), status, reason)
    assert len(node.service.inference.records.query_ids([("Type", ["Process"]), ("App-Name", ["permastore-llama"])])) == before


def test_a_spawn_on_a_model_nobody_trusted_is_403(node, caller, stranger):
    with node.client() as client:
        upload = stranger.item([("Type", "model"), ("App-Name", "permastore-llama")], b"GGUF" + bytes(60))
        assert client.post("/tx", content=upload, headers=OCTET).status_code == 200
    _refused(node, caller.spawn(node.units["module"], node.units["scheduler"], [("Model", item_id(upload))]),
             403, "is not trusted here")


def test_a_spawn_with_a_system_prompt_twice_is_refused(node, caller):
    raw = caller.spawn(node.units["module"], node.units["scheduler"],
                       [("Model", node.model_id), ("System-Prompt", "a")], b"b")
    _refused(node, raw, 400, "not both")


@pytest.mark.parametrize("tags, target, reason", [
    ([("Type", "Message")], None, "needs the tag Data-Protocol: ao"),
    ([("Data-Protocol", "ao"), ("Type", "Module")], None, "not 'Module'"),
    ([("Data-Protocol", "ao"), ("Type", "Message")], None, "needs a target"),
    ([("Data-Protocol", "ao"), ("Type", "Process")], "T" * 42 + "A", "must not have a target"),
])
def test_items_that_are_not_spawns_or_messages_are_refused(node, caller, tags, target, reason):
    _refused(node, caller.item(tags, b"x", target=target), 400, reason)


def test_unsupported_mu_calls_answer_a_clear_4xx(node, caller, process):
    with node.client() as client:
        monitor = client.post(f"/ao/mu/monitor/{process}", content=b"x", headers=OCTET)
        assign = client.post("/ao/mu", params={"process-id": process, "assign": "A" * 43}, headers=OCTET)
        other = client.get("/ao/cu/state/" + process)
    assert monitor.status_code == 400 and "monitor is not supported" in monitor.json()["error"]
    assert assign.status_code == 400 and "assignments are not supported" in assign.json()["error"]
    assert other.status_code == 404 and "not an AO unit route" in other.json()["error"]


def test_a_message_without_credit_is_402_and_nothing_is_stored_or_charged(paid_node, caller):
    process = spawned(paid_node, caller)
    raw = caller.message(process, inference_tags(), b"hello")
    _refused(paid_node, raw, 402, "insufficient credit")
    with paid_node.client() as client:
        reply = post_item(client, caller.message(process, inference_tags(), b"hello"))
        assert reply.json()["needed"] > 0 and reply.json()["balance"] == 0
        assert client.get(f"/credits/{caller.address}").json()["balance"] == 0


def test_an_offered_payment_below_the_fee_is_402(paid_node, caller):
    process = spawned(paid_node, caller)
    with paid_node.client() as client:
        client.post(f"/credits/{caller.address}", json={"amount": 10_000})
        raw = caller.message(process, [*inference_tags(), ("Payment", "1")], b"hello")
        before = client.get(f"/credits/{caller.address}").json()["balance"]
        _refused(paid_node, raw, 402, "")
        assert client.get(f"/credits/{caller.address}").json()["balance"] == before
