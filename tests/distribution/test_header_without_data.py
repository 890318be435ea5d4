"""A tx header without its data: a read-through node answers /tx/{id} with the verified header."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from permastore.protocol import b64url
from tests.helpers.keys import VECTORS

from .conftest import signed_tx
from .hostile import HostileUpstream

CONFIRMED = {"block_height": 7, "block_indep_hash": "b" * 64, "number_of_confirmations": 3}


@pytest.fixture
def hostile():
    upstream = HostileUpstream()
    yield upstream
    upstream.close()


def test_the_verified_header_is_served_while_the_data_cannot_be_had(nodes, hostile, rsa_signer):
    data = os.urandom(300_000)
    missing = signed_tx(rsa_signer, data)
    wrong = signed_tx(rsa_signer, os.urandom(1000))
    forged = dict(signed_tx(rsa_signer, b"forged").to_json(), data="", tags=[{"name": "WA", "value": "WA"}])
    forged_id = forged["id"]
    hostile.objects = {
        missing.id: {"tx": dict(missing.to_json(), data=""), "status": CONFIRMED},  # no data anywhere
        wrong.id: {"tx": dict(wrong.to_json(), data=""), "status": CONFIRMED, "data": os.urandom(1000)},
        forged_id: {"tx": forged, "status": CONFIRMED},  # a header whose signature does not cover it
    }
    node = nodes.start("b", "--upstream", hostile.url)
    with httpx.Client(base_url=node.url, timeout=60) as client:
        for tx in (missing, wrong):
            header = client.get(f"/tx/{tx.id}")
            assert header.status_code == 200, header.text
            assert header.json()["id"] == tx.id and header.json()["data_root"] == b64url.encode(tx.data_root)
            assert client.get(f"/tx/{tx.id}/status").json() == CONFIRMED
            assert client.get(f"/tx/{tx.id}/data_size").text == str(tx.data_size)
            data_answer = client.get(f"/{tx.id}")
            assert data_answer.status_code in (404, 502) and data_answer.json()["error"]
            assert client.get(f"/tx/{tx.id}/offset").status_code == 404  # data pending: no weave offset
        assert client.get(f"/tx/{forged_id}").status_code in (404, 502)  # never a header that does not verify
        # Once the upstream has the right data, it is fetched and served under the header kept.
        hostile.objects[missing.id]["data"] = data
        assert client.get(f"/{missing.id}").content == data
        assert client.get(f"/tx/{missing.id}/offset").json()["size"] == str(len(data))


def test_a_read_through_of_the_ecdsa_fixture_verifies(nodes, hostile):
    doc = json.loads((VECTORS / "ario" / "signed_ecdsa_tx.json").read_text())
    hostile.objects = {doc["id"]: {"tx": doc, "status": CONFIRMED}}
    node = nodes.start("b", "--upstream", hostile.url)
    with httpx.Client(base_url=node.url, timeout=60) as client:
        header = client.get(f"/tx/{doc['id']}")
        assert header.status_code == 200, header.text
        assert header.json()["id"] == doc["id"] and header.json()["signature"] == doc["signature"]
        assert client.get(f"/tx/{doc['id']}/status").json() == CONFIRMED
