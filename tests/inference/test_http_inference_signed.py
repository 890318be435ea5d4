"""Callers identified by a request signed as an ANS-104 item with their own key (no API key)."""

from __future__ import annotations

import json

import pytest

from permastore.protocol import ans104, b64url
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag
from tests.inference.conftest import error_reason
from tests.inference.inference_server import start_server

OCTET = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def node(tmp_path_factory, tiny_gguf):
    server = start_server(tmp_path_factory.mktemp("signed") / "data", herder={
        "fee_base": 5, "fee_token": 1, "require_keys": True,
    })
    server.model_id = server.add_model(tiny_gguf)
    _NODE["address"] = _node_address(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def signer():
    return Ed25519Signer(bytes(range(32)))


def _node_address(node) -> str:
    from permastore.protocol.wallet import address_of

    return address_of(node.store.signer.owner)


def _item(signer, body: dict, nonce: str, target: str | None = None) -> bytes:
    """Return the request signed as an item; target: the node it is for (the test node by default)."""
    tags = [Tag.text("Content-Type", "application/json"), Tag.text("Request-Nonce", nonce)]
    target = target or _NODE["address"]
    return ans104.build_item(signer, json.dumps(body).encode(), tags,
                             target=b64url.decode(target) if target != "none" else None)


_NODE: dict = {}


def test_a_signed_request_is_charged_to_its_owner(node, signer):
    item = _item(signer, {"model": node.model_id, "prompt": "hi", "max_tokens": 4, "seed": 1}, "1")
    owner = ans104.parse_header(item).owner_address
    with node.client() as client:
        assert client.post(f"/credits/{owner}", json={"amount": 1000}).status_code == 200
        reply = client.post("/v1/completions", content=item, headers=OCTET)
        assert reply.status_code == 200, reply.text
        fee = reply.json()["fee"]
        assert fee > 0
        assert client.get(f"/credits/{owner}").json()["balance"] == 1000 - fee
        message = reply.json()["record"]["message"]
    assert node.service.inference.records.load(message).record.caller == owner
    # The signed request itself is kept, as the caller's permanent authorisation.
    assert node.store.info(ans104.parse_header(item).id) is not None


def test_a_signed_request_is_accepted_once(node, signer):
    item = _item(signer, {"model": node.model_id, "prompt": "again", "max_tokens": 2}, "2")
    owner = ans104.parse_header(item).owner_address
    with node.client() as client:
        client.post(f"/credits/{owner}", json={"amount": 1000})
        assert client.post("/v1/completions", content=item, headers=OCTET).status_code == 200
        balance = client.get(f"/credits/{owner}").json()["balance"]
        replayed = client.post("/v1/completions", content=item, headers=OCTET)
        assert replayed.status_code == 409 and "already used" in error_reason(replayed)
        assert client.get(f"/credits/{owner}").json()["balance"] == balance


def test_a_tampered_or_garbled_item_is_refused(node, signer):
    item = bytearray(_item(signer, {"model": node.model_id, "prompt": "abc", "max_tokens": 2}, "3"))
    item[-3] ^= 1  # flips a byte of the JSON: the signature no longer holds
    with node.client() as client:
        tampered = client.post("/v1/completions", content=bytes(item), headers=OCTET)
        assert tampered.status_code == 400 and "signed ANS-104" in error_reason(tampered)
        garbled = client.post("/v1/completions", content=b"\x02\x00garbage", headers=OCTET)
        assert garbled.status_code == 400
        not_json_item = ans104.build_item(signer, b"\xff", [], target=b64url.decode(_NODE["address"]))
        not_json = client.post("/v1/completions", content=not_json_item, headers=OCTET)
        assert not_json.status_code == 400 and "JSON" in error_reason(not_json)


@pytest.mark.parametrize("target, status, reason", [
    ("none", 400, "must name this node"),
    ("A" * 43, 403, "is for node " + "A" * 43),
])
def test_a_signed_request_for_another_node_is_refused_and_kept_nowhere(node, signer, target, status, reason):
    item = _item(signer, {"model": node.model_id, "prompt": "elsewhere", "max_tokens": 2}, "9" + target[:1], target)
    owner = ans104.parse_header(item).owner_address
    with node.client() as client:
        client.post(f"/credits/{owner}", json={"amount": 1000})
        balance = client.get(f"/credits/{owner}").json()["balance"]
        reply = client.post("/v1/completions", content=item, headers=OCTET)
        assert reply.status_code == status and reason in error_reason(reply), reply.text
        assert client.get(f"/credits/{owner}").json()["balance"] == balance
    assert node.store.info(ans104.parse_header(item).id) is None
