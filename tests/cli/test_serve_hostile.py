"""Issue 7 points 1 and 13 and ECDSA txs through a real `permastore serve` on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from permastore.protocol import ans104, b64url
from permastore.protocol.signers import Ed25519Signer, Secp256k1Signer
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign
from permastore.store import Store
from tests.helpers.keys import seed_wallet
from tests.helpers.servers import start_server
from tests.store.hostile import flipped, forged_rsa_item, forged_rsa_tx, item_id, mixed_bundle

ECDSA_FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "vectors" / "ario" / "signed_ecdsa_tx.json"
ED = Ed25519Signer(bytes(range(32)))
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return seed_wallet(tmp_path / "data")


def serve(data_dir: Path, log: Path):
    return start_server(data_dir, log, "--mine-interval", "0")


def assert_json_400(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == 400 and all(word in body["error"] for word in words), body


def test_malformed_owners_are_400_and_a_bundle_with_bad_items_survives_a_restart(data_dir, tmp_path):
    signed_bundle, good, bad = mixed_bundle(ED)
    server = serve(data_dir, tmp_path / "1.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert_json_400(client.post("/tx", json=forged_rsa_tx(bytes(512))), "signature")
            assert_json_400(client.post("/tx", json=forged_rsa_tx((2).to_bytes(512, "big"), 10)), "signature")
            assert_json_400(client.post("/tx", content=forged_rsa_item(bytes(512)), headers=OCTETS), "signature")
            posted = client.post("/tx", content=signed_bundle, headers=OCTETS)
            assert posted.status_code == 200 and posted.json()["id"] == item_id(signed_bundle)
            assert client.get(f"/{item_id(good[0])}").content == b"good sibling 0"
            assert client.get(f"/{item_id(bad[0])}").status_code == 404
    finally:
        server.stop()
    # The state a crash in the middle of unbundling leaves: before the fix, every start died here.
    conn = sqlite3.connect(data_dir / "index.sqlite")
    with conn:
        conn.execute("UPDATE objects SET bundle_state = 'pending' WHERE id = ?", (item_id(signed_bundle),))
        conn.execute("DELETE FROM objects WHERE bundled_in = ?", (item_id(signed_bundle),))
    conn.close()
    server = serve(data_dir, tmp_path / "2.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for i, item in enumerate(good):
                assert client.get(f"/{item_id(item)}").content == f"good sibling {i}".encode()
            assert all(client.get(f"/{item_id(item)}").status_code == 404 for item in bad)
    finally:
        assert server.stop() == 0


def test_a_tampered_copy_of_a_stored_item_is_400_and_the_original_still_served(data_dir, tmp_path):
    item = ans104.build_item(ED, b"served as stored", [Tag(b"Content-Type", b"text/plain")])
    server = serve(data_dir, tmp_path / "s.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/tx", content=item, headers=OCTETS).status_code == 200
            assert_json_400(client.post("/tx", content=flipped(item, -1), headers=OCTETS), "signature")
            assert_json_400(client.post("/tx", content=item + b"x", headers=OCTETS), "signature")
            assert client.post("/tx", content=item, headers=OCTETS).status_code == 200  # the same copy: fine
            assert client.get(f"/{item_id(item)}").content == b"served as stored"
    finally:
        server.stop()


def test_ecdsa_fixture_is_served_with_the_json_arweave_sends(data_dir, tmp_path):
    genuine = json.loads(ECDSA_FIXTURE.read_text())
    with Store.open(data_dir) as store:
        store.put_tx(Transaction.from_json(genuine))
    server = serve(data_dir, tmp_path / "e.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/mine").status_code == 200
            assert client.get(f"/tx/{genuine['id']}").json() == genuine
            assert client.get(f"/tx/{genuine['id']}/owner").text == ""
            assert client.get(f"/tx/{genuine['id']}/status").status_code == 200
    finally:
        server.stop()


def test_an_ecdsa_tx_posted_to_a_real_server_is_accepted_mined_and_served(data_dir, tmp_path):
    signer = Secp256k1Signer(bytes(range(1, 33)))
    data = b"data of an ECDSA-signed tx"
    tx = sign(Transaction(format=2, data=data, reward=100, tags=[Tag(b"Content-Type", b"text/plain")]), signer)
    server = serve(data_dir, tmp_path / "p.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post(f"/mint/{tx.owner_address}/1000").status_code == 200
            doc = tx.to_json()
            assert doc["owner"] == ""
            assert client.post("/tx", json=doc).status_code == 200, client.post("/tx", json=doc).text
            client.post("/mine")
            assert client.get(f"/tx/{tx.id}").json() == dict(doc, data="")
            assert client.get(f"/{tx.id}").content == data
            assert client.get(f"/wallet/{tx.owner_address}/balance").text == "900"
            # Same signature, hence same ID, other fields: it verifies (with another owner), but
            # it is not the stored tx. Before the fix this was 208 "already processed".
            variant = Transaction.from_json(dict(doc, tags=[]))
            assert variant.id == tx.id and variant.owner_address != tx.owner_address
            client.post(f"/mint/{variant.owner_address}/1000")
            assert_json_400(client.post("/tx", json=dict(doc, tags=[])), "other signed fields")
            query = {"query": f'{{ transaction(id: "{tx.id}") {{ owner {{ address key }} }} }}'}
            owner = client.post("/graphql", json=query).json()["data"]["transaction"]["owner"]
            assert owner == {"address": tx.owner_address, "key": b64url.encode(signer.owner)}
    finally:
        server.stop()
