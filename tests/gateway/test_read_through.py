"""Read-through with --upstream: real servers on 127.0.0.1, and a fake upstream that tampers."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from permastore.protocol import ans104, b64url

from .conftest import signed_item, signed_tx
from .servers import start_server


@pytest.fixture
def first(tmp_path):
    running = start_server(tmp_path / "a", tmp_path / "a.log", "--mine-interval", "0")
    yield running
    running.stop()


def test_second_node_serves_and_keeps_what_the_first_has(tmp_path, first, rsa_signer, ed_signer):
    small = signed_tx(rsa_signer, b"small L1 data", {"Content-Type": "text/plain"})
    big_data = os.urandom(700_000)
    big = signed_tx(rsa_signer, big_data)
    item = signed_item(ed_signer, b"an ed25519 item", {"Content-Type": "text/x-item", "K": "v"})
    rsa_item = signed_item(rsa_signer, os.urandom(300_000))
    with httpx.Client(base_url=first.url, timeout=60) as a:
        for tx in (small, big):
            assert a.post("/tx", json=tx.to_json()).status_code == 200
        item_ids = []
        for raw in (item, rsa_item):
            response = a.post("/tx", content=raw, headers={"Content-Type": "application/octet-stream"})
            item_ids.append(response.json()["id"])
        a.post("/mine")
    second = start_server(tmp_path / "b", tmp_path / "b.log", "--mine-interval", "0", "--upstream", first.url)
    try:
        with httpx.Client(base_url=second.url, timeout=60) as b:
            assert b.get(f"/{small.id}").content == b"small L1 data"
            assert b.get(f"/{small.id}").headers["content-type"] == "text/plain"
            assert b.get(f"/{big.id}").content == big_data
            assert b.get(f"/{item_ids[0]}").content == b"an ed25519 item"
            assert b.get(f"/{item_ids[0]}").headers["content-type"] == "text/x-item"
            assert b.get(f"/{item_ids[1]}").content == ans104.parse_item(rsa_item)[1]
            assert b.get("/" + "A" * 43).status_code == 404
            first.stop()
            # Kept locally: served with the upstream gone.
            assert b.get(f"/{big.id}").content == big_data
            assert b.get(f"/{item_ids[0]}").content == b"an ed25519 item"
            assert b.get(f"/tx/{small.id}/status").status_code == 202  # pending here until this node mines
    finally:
        second.stop()


class TamperingUpstream(BaseHTTPRequestHandler):
    """Serves a real signed tx header and a real item's fields, with one data byte changed."""

    objects: dict = {}

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] == "tx":
            found = self.objects.get(parts[-1], {}).get("tx")
            if found is None:
                return self._send(404, b'{"error": "Not Found"}')
            return self._send(200, json.dumps(found).encode())
        object_id = parts[-1]
        if object_id in self.objects:
            data = self.objects[object_id]["data"]
            wanted = self.headers.get("Range")
            if wanted:  # "bytes=N-": the rest, as a resumed transfer asks
                start = int(wanted.split("=")[1].rstrip("-"))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])
                return
            if self.objects[object_id].get("cut"):  # promise everything, send a third, hang up
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 3])
                self.wfile.flush()
                self.close_connection = True
                return
            return self._send(200, data, "application/octet-stream")
        self._send(404, b'{"error": "Not Found"}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length))
        found = self.objects.get(request["variables"]["id"], {}).get("gql")
        self._send(200, json.dumps({"data": {"transaction": found}}).encode())


@pytest.fixture
def tampering_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), TamperingUpstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def flipped(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def test_tampered_upstream_bytes_are_refused(tmp_path, tampering_upstream, rsa_signer, ed_signer):
    server, url = tampering_upstream
    tx_data = os.urandom(300_000)
    tx = signed_tx(rsa_signer, tx_data)
    item = signed_item(ed_signer, b"the real item data", {"Name": "value"})
    header, item_data = ans104.parse_item(item)
    TamperingUpstream.objects = {
        tx.id: {"tx": dict(tx.to_json(), data=""), "data": flipped(tx_data)},
        header.id: {
            "gql": {
                "id": header.id, "signature": b64url.encode(header.signature), "anchor": "", "recipient": "",
                "owner": {"key": b64url.encode(header.owner)}, "tags": [{"name": "Name", "value": "value"}],
                "data": {"size": str(len(item_data))},
            },
            "data": flipped(item_data),
        },
    }
    node = start_server(tmp_path / "b", tmp_path / "b.log", "--mine-interval", "0", "--upstream", url)
    try:
        for object_id in (tx.id, header.id):
            response = httpx.get(f"{node.url}/{object_id}", timeout=60)
            assert response.status_code == 502, response.text
            assert "verification" in response.json()["error"]
        # Nothing was kept: once the upstream sends the right bytes, they are what is served.
        TamperingUpstream.objects[tx.id]["data"] = tx_data
        TamperingUpstream.objects[header.id]["data"] = item_data
        assert httpx.get(f"{node.url}/{tx.id}", timeout=60).content == tx_data
        assert httpx.get(f"{node.url}/{header.id}", timeout=60).content == b"the real item data"
    finally:
        node.stop()


def test_cut_transfers_resume_with_ranges(tmp_path, tampering_upstream, rsa_signer):
    server, url = tampering_upstream
    data = os.urandom(2_000_000)
    tx = signed_tx(rsa_signer, data)
    TamperingUpstream.objects = {tx.id: {"tx": dict(tx.to_json(), data=""), "data": data, "cut": True}}
    node = start_server(tmp_path / "b", tmp_path / "b.log", "--mine-interval", "0", "--upstream", url)
    try:
        assert httpx.get(f"{node.url}/{tx.id}", timeout=60).content == data
        assert "resuming" in node.log()
    finally:
        node.stop()


def test_malformed_upstream_answers_are_refused_cleanly(tmp_path, tampering_upstream, ed_signer):
    server, url = tampering_upstream
    item = signed_item(ed_signer, b"data")
    header, data = ans104.parse_item(item)
    good = {
        "id": header.id, "signature": b64url.encode(header.signature), "anchor": "", "recipient": "",
        "owner": {"key": b64url.encode(header.owner)}, "tags": [], "data": {"size": "4"},
    }
    answers = [
        {"owner": {}}, {"owner": {"key": 5}}, ["not", "an", "object"], dict(good, owner={"key": "AAAA"}),
        dict(good, data={"size": "-1"}), dict(good, data={"size": "many"}), dict(good, tags=[{"name": 1}]),
        dict(good, signature="!!"), dict(good, data={"size": "3"}),
    ]
    node = start_server(tmp_path / "b", tmp_path / "b.log", "--mine-interval", "0", "--upstream", url)
    try:
        for answer in answers:
            TamperingUpstream.objects = {header.id: {"gql": answer, "data": data}}
            response = httpx.get(f"{node.url}/{header.id}", timeout=60)
            assert response.status_code in (404, 502), (answer, response.status_code, response.text)
            assert response.json()["error"]
        TamperingUpstream.objects = {header.id: {"gql": good, "data": data}}
        assert httpx.get(f"{node.url}/{header.id}", timeout=60).content == b"data"
    finally:
        node.stop()
