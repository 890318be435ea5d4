"""Issue 7 point 8: reads through upstreams are bounded in size, time and rate, and never starve local reads."""

from __future__ import annotations

import concurrent.futures
import os

import httpx
import pytest

from permastore.protocol import ans104

from .conftest import signed_tx
from .hostile import HostileUpstream

MIB = 1024 * 1024


@pytest.fixture
def hostile():
    upstream = HostileUpstream()
    yield upstream
    upstream.close()


def header_of(tx) -> dict:
    return dict(tx.to_json(), data="")


def test_a_dripping_upstream_is_cut_off(nodes, hostile, rsa_signer):
    data_tx = signed_tx(rsa_signer, os.urandom(2000))
    header_tx = signed_tx(rsa_signer, b"the header itself drips")
    hostile.objects = {
        data_tx.id: {"tx": header_of(data_tx), "data": os.urandom(2000), "mode": "drip"},
        header_tx.id: {"tx": header_of(header_tx), "mode": "drip_header"},
    }
    node = nodes.start("b", "--upstream", hostile.url)
    with httpx.Client(base_url=node.url, timeout=45) as client:  # 2000 drips of 5 s would be hours
        for tx in (data_tx, header_tx):
            response = client.get(f"/{tx.id}")
            assert response.status_code in (404, 502), response.text
            assert response.json()["error"]
    assert hostile.sent < 40  # a few bytes over the rate window, not the whole answer


def test_an_item_answer_is_read_no_further_than_declared(nodes, hostile, ed_signer):
    endless = ans104.build_item(ed_signer, b"endless", [])
    claimed = ans104.build_item(ed_signer, b"claims a terabyte", [])
    objects = {}
    for item, extra in ((endless, {"mode": "endless"}), (claimed, {"mode": "claim", "claim": 10**12})):
        header, data = ans104.parse_item(item)
        objects[header.id] = {"header": item[: header.header_size], "data": data, **extra}
    hostile.objects = objects
    node = nodes.start("b", "--upstream", hostile.url)
    with httpx.Client(base_url=node.url, timeout=60) as client:
        for item_id in objects:
            response = client.get(f"/{item_id}")
            assert response.status_code == 502, response.text
    assert hostile.sent < 64 * MIB  # the endless one is refused before its data is read


def test_many_dripping_reads_leave_local_reads_answered(nodes, hostile, rsa_signer):
    drips = [signed_tx(rsa_signer, n.to_bytes(4, "big") * 100) for n in range(45)]
    hostile.objects = {tx.id: {"tx": header_of(tx), "data": tx.data, "mode": "drip"} for tx in drips}
    node = nodes.start("b", "--upstream", hostile.url)
    local = signed_tx(rsa_signer, b"held here")
    with httpx.Client(base_url=node.url, timeout=60) as client:
        assert client.post("/tx", json=local.to_json()).status_code == 200
    with concurrent.futures.ThreadPoolExecutor(len(drips)) as pool:
        futures = [pool.submit(httpx.get, f"{node.url}/{tx.id}", timeout=90) for tx in drips]
        try:
            with httpx.Client(base_url=node.url, timeout=5) as client:  # answered at once, or ReadTimeout
                for _ in range(5):
                    assert client.get(f"/{local.id}").content == b"held here"
                    assert client.get("/info").status_code == 200
                    assert client.get(f"/tx/{local.id}/data_root").status_code in (200, 202)
        finally:
            statuses = sorted(future.result().status_code for future in futures)
    assert set(statuses) <= {502, 503, 404}, statuses
    assert 503 in statuses  # more than the bound were refused at once, told to retry
