"""`serve --peer`: objects this node lacks are fetched from its peers and served while they arrive."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from permastore.protocol import ans104, b64url, bundle
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign
from permastore.store import Store
from tests.helpers.keys import VECTORS

from .conftest import seeded
from .proxy import NodeProxy
from .test_pull import MIB, hold_everywhere

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_a_full_get_and_a_range_are_served_while_the_object_is_fetched(nodes, jwk):
    data = os.urandom(16 * MIB + 999)
    folders = [seeded(nodes.tmp_path / name, jwk) for name in ("a", "b")]
    object_id = hold_everywhere(folders, data)
    proxies = [NodeProxy(nodes.start(name).url) for name in ("a", "b")]
    try:
        # A rate cap keeps the fetch running for a couple of seconds: long enough to watch it.
        node = nodes.start("d", *sum((["--peer", p.url] for p in proxies), []), "--max-rate", "6M")
        results: dict = {}

        def full_get():
            with httpx.Client(timeout=120) as client, client.stream("GET", f"{node.url}/{object_id}") as response:
                results["full_headers"] = response.headers
                results["full_first_byte"] = None
                body = bytearray()
                for piece in response.iter_bytes():
                    if results["full_first_byte"] is None:
                        results["full_first_byte"] = time.monotonic()
                    body += piece
                results["full"] = (response.status_code, bytes(body), time.monotonic())

        started = time.monotonic()
        getter = threading.Thread(target=full_get)
        getter.start()
        time.sleep(0.3)
        ranged = httpx.get(f"{node.url}/{object_id}", headers={"Range": "bytes=12000000-12999999"}, timeout=120)
        ranged_done = time.monotonic()
        getter.join()
        status, body, full_done = results["full"]
        assert status == 200 and body == data
        assert results["full_headers"].get("x-permastore-fetching") == "1"  # it was served while fetched
        assert results["full_headers"]["content-type"] == "application/x-test"
        assert ranged.status_code == 206 and ranged.content == data[12_000_000:13_000_000]
        assert ranged.headers["content-range"] == f"bytes 12000000-12999999/{len(data)}"
        assert ranged_done < full_done  # its chunks were fetched first, not after the ones before them
        assert sum(p.sent for p in proxies) < 1.2 * len(data)  # one fetch for both requests
        assert results["full_first_byte"] - started < 10  # (reported in the benchmark; here: not at the end)
        # Held once the fetch completes (its last batch made durable): served from the store, offsets and all.
        deadline = time.monotonic() + 60
        while httpx.get(f"{node.url}/tx/{object_id}/offset", timeout=60).status_code != 200:
            assert time.monotonic() < deadline, "the fetch never completed"
            time.sleep(0.1)
        again = httpx.get(f"{node.url}/{object_id}", timeout=60)
        assert again.content == data and "x-permastore-fetching" not in again.headers
        assert httpx.get(f"{node.url}/tx/{object_id}/offset", timeout=60).json()["size"] == str(len(data))
        assert [p for p in httpx.get(f"{node.url}/peers").json()] == [p.url.removeprefix("http://") for p in proxies]
    finally:
        for proxy in proxies:
            proxy.close()


def bundle_tx(signer, ed_signer, sizes):
    """Return (tx, data, items) for an L1 tx carrying an ANS-104 bundle of items of the given data sizes."""
    items = [ans104.build_item(ed_signer, os.urandom(size), [Tag(b"N", str(n).encode())]) for n, size in enumerate(sizes)]
    data = bundle.build_bundle(items)
    tags = [Tag(b"Bundle-Format", b"binary"), Tag(b"Bundle-Version", b"2.0.0")]
    return sign(Transaction(format=2, data=data, tags=tags), signer), data, items


def test_an_item_inside_a_bundle_is_fetched_through_the_bundle_chunks(nodes, jwk, rsa_signer, ed_signer):
    tx, data, items = bundle_tx(rsa_signer, ed_signer, [900_000, 1_300_000, 700_000, 2_000_000])
    with Store.open(seeded(nodes.tmp_path / "a", jwk)) as store:
        store.put_tx(tx, data)
    proxy = NodeProxy(nodes.start("a").url)
    try:
        node = nodes.start("d", "--peer", proxy.url)
        header, item_data = ans104.parse_item(items[1])
        response = httpx.get(f"{node.url}/{header.id}", timeout=60)
        assert response.status_code == 200 and response.content == item_data
        # Only the chunks covering the item (and the bundle index) came, not the bundle.
        assert proxy.sent < len(item_data) + 4 * 262144 < len(data)
    finally:
        proxy.close()
    nodes.running[-1].stop()
    with Store.open(nodes.tmp_path / "d") as store:
        info = store.info(header.id)
        assert info.kind == "item" and info.bundled_in == tx.id and info.data_complete
        assert b"".join(store.item_bytes(header.id)) == items[1]  # header and data: the signed item
        assert store.info(tx.id) is None  # the bundle itself is not held
        assert store.fsck().ok


class MainnetNode(BaseHTTPRequestHandler):
    """A stand-in Arweave node with one mainnet tx: /tx/{id}, /tx/{id}/offset, /chunk/{offset}; no /raw, no /leaves."""

    flip = False
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body: bytes):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        tx = json.loads((VECTORS / "ario" / "txs" / f"{TX_ID}.json").read_text())
        offset = json.loads((VECTORS / "ario" / "txs" / "offsets" / f"{TX_ID}.json").read_text())
        end, size = int(offset["offset"]), int(offset["size"])
        if self.path == f"/tx/{TX_ID}":
            return self._send(200, json.dumps(tx).encode())
        if self.path == f"/tx/{TX_ID}/offset":
            return self._send(200, json.dumps(offset).encode())
        if self.path.startswith("/chunk/") and end - size < int(self.path.split("/")[2]) <= end:
            chunk = json.loads((VECTORS / "ario" / "51530681327863.json").read_text())
            if self.flip:
                raw = bytearray(b64url.decode(chunk["chunk"]))
                raw[1000] ^= 1
                chunk["chunk"] = b64url.encode(bytes(raw))
            return self._send(200, json.dumps(chunk).encode())
        self._send(404, b'{"error":"not found"}')

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(200, b'{"data":{"transaction":null}}')


TX_ID = "----LT69qUmuIeC4qb0MZHlxVp7UxLu_14rEkA_9n6w"


@pytest.mark.parametrize("flip", [False, True])
def test_a_mainnet_tx_is_fetched_over_the_standard_chunk_route(nodes, flip):
    handler = type("Handler", (MainnetNode,), {"flip": flip})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        node = nodes.start("d", "--peer", f"http://127.0.0.1:{server.server_address[1]}")
        response = httpx.get(f"{node.url}/{TX_ID}", timeout=60)
        chunk = b64url.decode(json.loads((VECTORS / "ario" / "51530681327863.json").read_text())["chunk"])
        if flip:
            assert response.status_code == 502  # its data_path does not prove the flipped bytes
            assert httpx.get(f"{node.url}/unconfirmed_tx/{TX_ID}", timeout=60).json()["id"] == TX_ID  # header kept
        else:
            assert response.status_code == 200 and response.content == chunk and len(chunk) == 256_000
    finally:
        server.shutdown()
        server.server_close()


def test_a_model_only_a_peer_holds_is_fetched_and_used_for_a_completion(nodes, jwk):
    from inference.context import Inference

    with Store.open(seeded(nodes.tmp_path / "a", jwk)) as store:
        inference = Inference.open(store)
        model_id = inference.models.add(FIXTURES / "tiny-llama.gguf")
        inference.close()
    peer = nodes.start("a")
    node = nodes.start("d", "--peer", peer.url)
    request = {"model": model_id, "prompt": "once upon a time", "max_tokens": 4, "seed": 3}
    response = httpx.post(f"{node.url}/v1/completions", json=request, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["text"] is not None
    nodes.running[-1].stop()
    with Store.open(nodes.tmp_path / "d") as store:
        path = store.object_path(model_id)
        assert path.read_bytes() == (FIXTURES / "tiny-llama.gguf").read_bytes()


def test_peers_are_learnt_from_peers_only_when_asked_and_within_the_bound(nodes, jwk):
    data = os.urandom(600_000)
    folders = [seeded(nodes.tmp_path / name, jwk) for name in ("c", "b")]
    object_id = hold_everywhere(folders, data)
    c = nodes.start("c")
    b = nodes.start("b", "--peer", c.url)
    a = nodes.start("a", "--peer", b.url, "--peer", c.url)  # lists two peers; a learner may take one
    plain = nodes.start("d", "--peer", a.url)
    learner = nodes.start("e", "--peer", a.url, "--learn-peers", "1")
    for node in (plain, learner):
        assert httpx.get(f"{node.url}/{object_id}", timeout=60).status_code in (200, 404)
    host = lambda server: server.url.removeprefix("http://")  # noqa: E731
    assert httpx.get(f"{plain.url}/peers").json() == [host(a)]  # opt-in: nothing learnt by default
    learnt = httpx.get(f"{learner.url}/peers").json()
    assert learnt[0] == host(a) and len(learnt) == 2 and learnt[1] in (host(b), host(c))  # at most one more
    # The learnt peer is used: A does not hold the object, the peer learnt from it does.
    assert httpx.get(f"{learner.url}/{object_id}", timeout=60).content == data
