"""POST /tx, POST /chunk, /tx/{id}/..., /chunk/{offset}, blocks and wallets, against the in-process app."""

import os

from permastore.protocol import b64url, merkle
from permastore.protocol.tx import Transaction, sign
from tests.helpers.keys import KEY_ADDRESS

from .conftest import chunk_posts, header_only, signed_item, signed_tx


def mine(client, count: int = 1) -> dict:
    response = client.post("/mine" if count == 1 else f"/mine/{count}")
    assert response.status_code == 200
    return response.json()


def get_data_like_arweave_js(client, tx_id: str) -> bytes:
    """Download data as arweave-js transactions.getData does: /tx/{id}/offset, then /chunk/{offset}."""
    offset = client.get(f"/tx/{tx_id}/offset").json()
    size, end = int(offset["size"]), int(offset["offset"])
    start = end - size + 1
    data = b""
    while len(data) < size:
        chunk = client.get(f"/chunk/{start + len(data)}")
        assert chunk.status_code == 200, chunk.text
        data += b64url.decode(chunk.json()["chunk"])
    return data


def test_inline_tx_pending_then_mined(client, rsa_signer):
    anchor = client.get("/tx_anchor").text
    assert len(b64url.decode(anchor)) == 48
    tx = signed_tx(rsa_signer, b"inline data", {"App-Name": "test"}, last_tx=b64url.decode(anchor))
    response = client.post("/tx", json=tx.to_json())
    assert response.status_code == 200, response.text
    assert client.post("/tx", json=tx.to_json()).status_code == 208  # already processed

    assert client.get(f"/tx/{tx.id}").status_code == 202
    status = client.get(f"/tx/{tx.id}/status")
    assert status.status_code == 202 and status.text == "Pending"
    assert client.get(f"/{tx.id}").content == b"inline data"  # served as soon as stored
    assert tx.id in client.get("/tx/pending").json()

    info = mine(client)
    assert info["height"] == 1 and info["current"] != anchor
    status = client.get(f"/tx/{tx.id}/status").json()
    assert status["block_height"] == 1
    assert status["block_indep_hash"] == info["current"]
    assert status["number_of_confirmations"] == 1
    mine(client, 2)
    assert client.get(f"/tx/{tx.id}/status").json()["number_of_confirmations"] == 3
    assert client.get("/tx/pending").json() == []

    header = client.get(f"/tx/{tx.id}").json()
    assert header["id"] == tx.id and header["data"] == ""
    assert Transaction.from_json({**header, "data": tx.to_json()["data"]}) == tx
    assert client.get(f"/tx/{tx.id}/data").text == b64url.encode(b"inline data")
    assert client.get(f"/tx/{tx.id}/owner").text == b64url.encode(tx.owner)
    assert client.get(f"/tx/{tx.id}/data_size").text == "11"
    assert client.get(f"/tx/{tx.id}/tags").json() == header["tags"]
    assert client.get(f"/tx/{tx.id}/nonsense").status_code == 400
    assert get_data_like_arweave_js(client, tx.id) == b"inline data"

    block = client.get("/block/height/1").json()
    assert block["indep_hash"] == info["current"] or tx.id in block["txs"]
    assert tx.id in block["txs"]
    assert client.get(f"/block/hash/{block['indep_hash']}").json()["height"] == 1
    assert client.get("/block/height/99").status_code == 404
    assert client.get("/block/hash/xyz").status_code == 400
    assert client.get(f"/wallet/{KEY_ADDRESS}/last_tx").text == tx.id


def test_chunked_upload_with_proofs(client, rsa_signer):
    data = os.urandom(3 * 256 * 1024 + 1000)
    tx = signed_tx(rsa_signer, data, {"Content-Type": "application/x-test"})
    assert client.post("/tx", json=header_only(tx)).status_code == 200
    assert client.get(f"/{tx.id}").status_code == 404  # no data yet
    posts = chunk_posts(tx, data)
    assert len(posts) >= 3

    forged = dict(posts[0], chunk=b64url.encode(b"x" * len(b64url.decode(posts[0]["chunk"]))))
    response = client.post("/chunk", json=forged)
    assert response.status_code == 400 and response.json()["error"] == "invalid_proof"
    wrong_path = dict(posts[1], data_path=posts[0]["data_path"])
    assert client.post("/chunk", json=wrong_path).json()["error"] == "invalid_proof"
    unknown_root = dict(posts[0], data_root=b64url.encode(b"\x01" * 32))
    assert client.post("/chunk", json=unknown_root).status_code == 400
    assert client.post("/chunk", content=b"{not json").json()["error"] == "invalid_json"

    for post in posts:
        response = client.post("/chunk", json=post)
        assert response.status_code == 200, response.text
    response = client.get(f"/{tx.id}")
    assert response.content == data
    assert response.headers["content-type"] == "application/x-test"
    mine(client)
    assert get_data_like_arweave_js(client, tx.id) == data


def test_range_of_a_tx_with_no_chunks_says_none_are_held(client, rsa_signer):
    """A peer's held-only range request for a tx whose header alone is here: 404, and the reason does
    not call the object partially held (no chunk of it was ever fetched or posted)."""
    data = os.urandom(2 * 256 * 1024)
    tx = signed_tx(rsa_signer, data, {})
    assert client.post("/tx", json=header_only(tx)).status_code == 200
    response = client.get(f"/raw/{tx.id}", headers={"Range": "bytes=0-9", "X-Permastore-Held-Only": "1"})
    assert response.status_code == 404
    reason = response.text
    assert "none fetched yet" in reason and "partially held" not in reason, reason


def test_chunk_route_proofs_verify(client, rsa_signer):
    first = signed_tx(rsa_signer, os.urandom(300_000))
    second = signed_tx(rsa_signer, os.urandom(70_000))
    for tx in (first, second):
        assert client.post("/tx", json=tx.to_json()).status_code == 200
    mine(client)
    block = client.get("/block/current").json()
    tx_root = b64url.decode(block["tx_root"])
    block_start = block["weave_size"] - block["block_size"]
    for tx in (first, second):
        offset = client.get(f"/tx/{tx.id}/offset").json()
        end = int(offset["offset"])
        body = client.get(f"/chunk/{end}").json()
        chunk, data_path, tx_path = (b64url.decode(body[k]) for k in ("chunk", "data_path", "tx_path"))
        # tx_path leads from the block's tx_root to this tx's data_root ...
        proven_tx = merkle.validate_path(tx_root, end - block_start, 0, block["block_size"], tx_path)
        assert proven_tx.data_hash == tx.data_root
        # ... and data_path from data_root to this chunk.
        tx_start = end - tx.data_size + 1
        proven = merkle.validate_path(tx.data_root, end - tx_start, 0, tx.data_size, data_path)
        assert proven.chunk_size == len(chunk)
        raw = client.get(f"/chunk/{end}/data")
        assert raw.content == chunk
    assert client.get("/chunk/999999999999").status_code == 404
    assert client.get("/chunk/-1").status_code == 400
    assert client.get("/chunk/abc").status_code == 400


def test_forged_and_malformed_txs_are_refused(client, rsa_signer):
    tx = signed_tx(rsa_signer, b"payload")
    tampered = dict(tx.to_json(), data=b64url.encode(b"PAYLOAD"))
    response = client.post("/tx", json=tampered)
    assert response.status_code == 400 and response.json()["error"]
    relabelled = dict(tx.to_json(), tags=[{"name": b64url.encode(b"a"), "value": b64url.encode(b"b")}])
    assert client.post("/tx", json=relabelled).status_code == 400
    bad_id = dict(tx.to_json(), id="A" * 43)
    assert client.post("/tx", json=bad_id).status_code == 400
    assert client.post("/tx", content=b"[1,2]", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post("/tx", content=b"\xff\xfe", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.get(f"/tx/{tx.id}").status_code == 404
    assert client.get(f"/{tx.id}").status_code == 404


def test_data_item_post_and_tampered_item(client, ed_signer):
    item = signed_item(ed_signer, b"item data", {"Content-Type": "text/plain"})
    tampered = item[:-4] + b"DATA"
    response = client.post("/tx", content=tampered, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 400 and response.json()["error"]
    item_id = signed_item.__globals__["ans104"].parse_header(item).id
    assert client.get(f"/{item_id}").status_code == 404  # nothing of the tampered upload was kept
    response = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200 and response.json()["id"] == item_id
    assert client.get(f"/{item_id}").content == b"item data"
    assert client.post("/tx", content=b"", headers={"Content-Type": "application/octet-stream"}).status_code == 400
    garbage = client.post("/tx", content=b"\x01\x00garbage", headers={"Content-Type": "application/octet-stream"})
    assert garbage.status_code == 400


def test_bundle_tx_is_unbundled(client, rsa_signer, ed_signer):
    from permastore.protocol.bundle import build_bundle

    items = [signed_item(ed_signer, b"first item"), signed_item(rsa_signer, b"second item", {"K": "v"})]
    bundle = build_bundle(items)
    tx = signed_tx(rsa_signer, bundle, {"Bundle-Format": "binary", "Bundle-Version": "2.0.0"})
    assert client.post("/tx", json=tx.to_json()).status_code == 200
    from permastore.protocol import ans104

    for item, data in zip(items, (b"first item", b"second item")):
        item_id = ans104.parse_header(item).id
        assert client.get(f"/{item_id}").content == data


def test_balances_mint_and_transfers(client, rsa_signer):
    other = "B" * 42 + "A"
    transfer = signed_tx(rsa_signer, b"", target=b64url.decode(other), quantity=500, reward=10)
    response = client.post("/tx", json=transfer.to_json())
    assert response.status_code == 400 and "funds" in response.json()["error"]
    assert client.get(f"/mint/{KEY_ADDRESS}/1000").status_code == 200
    assert client.get(f"/wallet/{KEY_ADDRESS}/balance").text == "1000"
    assert client.post("/tx", json=transfer.to_json()).status_code == 200
    assert client.get(f"/wallet/{KEY_ADDRESS}/balance").text == "490"
    assert client.get(f"/wallet/{other}/balance").text == "500"
    assert client.get("/wallet/short/balance").status_code == 400
    assert client.get(f"/mint/{KEY_ADDRESS}/-5").status_code == 400


def test_info_price_peers_health(client):
    info = client.get("/info").json()
    assert info["height"] == 0 and info["blocks"] == 1 and len(info["current"]) == 64
    assert client.get("/price/0").text == client.get("/price/1").text
    assert int(client.get("/price/1000000").text) > int(client.get("/price/1").text)
    assert client.get(f"/price/10/{KEY_ADDRESS}").status_code == 200
    assert client.get("/price/abc").status_code == 400
    assert client.get("/peers").json() == []
    assert client.get("/healthcheck").status_code == 200
    assert client.get("/docs").status_code == 200
    assert "/graphql" in client.get("/openapi.json").json()["paths"]


def test_format_1_tx_with_inline_data(client, rsa_signer):
    tx = sign(Transaction(format=1, data=b"format one data", data_size=15), rsa_signer)
    response = client.post("/tx", json=tx.to_json())
    assert response.status_code == 200, response.text
    assert client.get(f"/{tx.id}").content == b"format one data"
    mine(client)
    assert client.get(f"/tx/{tx.id}").json()["data"] == b64url.encode(b"format one data")  # format 1 keeps it inline


def test_item_header_and_unconfirmed_tx_for_other_nodes(client, rsa_signer, ed_signer):
    from permastore.protocol import ans104

    item = signed_item(ed_signer, b"header me", {"A": "b"})
    item_id = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"}).json()["id"]
    header = client.get(f"/item/{item_id}/header")
    assert header.status_code == 200 and header.headers["content-type"] == "application/octet-stream"
    assert header.content == item[: ans104.parse_header(item).header_size]
    tx = signed_tx(rsa_signer, b"pending")
    client.post("/tx", json=tx.to_json())
    assert client.get(f"/tx/{tx.id}").status_code == 202
    assert client.get(f"/unconfirmed_tx/{tx.id}").json()["id"] == tx.id
    assert client.get(f"/item/{tx.id}/header").status_code == 404  # a tx is not an item
    assert client.get(f"/unconfirmed_tx/{item_id}").status_code == 404
    assert client.get("/item/bad/header").status_code == 400


def test_anchors_must_be_recent_blocks_or_the_wallets_last_tx(client, rsa_signer):
    old_anchor = b64url.decode(client.get("/tx_anchor").text)
    first = signed_tx(rsa_signer, b"anchored on genesis", last_tx=old_anchor)
    assert client.post("/tx", json=first.to_json()).status_code == 200
    chained = signed_tx(rsa_signer, b"anchored on my last tx", last_tx=b64url.decode(first.id))
    assert client.post("/tx", json=chained.to_json()).status_code == 200
    stale_wallet_anchor = signed_tx(rsa_signer, b"anchored on an older tx of mine", last_tx=b64url.decode(first.id))
    response = client.post("/tx", json=stale_wallet_anchor.to_json())
    assert response.status_code == 400 and "invalid anchor" in response.json()["error"]
    unknown = signed_tx(rsa_signer, b"anchored on nothing", last_tx=os.urandom(48))
    response = client.post("/tx", json=unknown.to_json())
    assert response.status_code == 400 and "invalid anchor" in response.json()["error"]
    assert client.get(f"/tx/{unknown.id}/status").status_code == 404  # nothing kept

    mine(client, 49)  # genesis is now the 50th newest block: still an anchor
    still = signed_tx(rsa_signer, b"genesis, 49 blocks on", last_tx=old_anchor)
    assert client.post("/tx", json=still.to_json()).status_code == 200
    mine(client, 1)
    too_old = signed_tx(rsa_signer, b"genesis, 50 blocks on", last_tx=old_anchor)
    response = client.post("/tx", json=too_old.to_json())
    assert response.status_code == 400 and "last 50 block hashes" in response.json()["error"]


def test_mint_answers_the_new_balance_as_a_json_number_like_arlocal(client):
    first = client.get(f"/mint/{KEY_ADDRESS}/1000")
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    assert first.json() == 1000
    for _ in range(19):
        client.post(f"/mint/{KEY_ADDRESS}/{10**18}")
    assert client.post(f"/mint/{KEY_ADDRESS}/{10**18}").text == str(20 * 10**18 + 1000)  # past 2**64: digits, never 2e+19
