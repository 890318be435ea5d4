"""Read-through with --upstream: real servers on 127.0.0.1, and a fake upstream that tampers."""

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from permastore.protocol import ans104, b64url
from tests.helpers.servers import start_server

from .conftest import signed_item, signed_tx


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
            # Confirmed upstream when read through: the upstream's block, remembered with it gone.
            assert b.get(f"/tx/{small.id}/status").json()["block_height"] == 1
    finally:
        second.stop()


def test_read_through_tx_reports_the_upstream_confirmation(tmp_path, first, rsa_signer):
    """A tx the upstream has mined is 200 here at once, with the upstream's block; a pending one stays 202."""
    mined = signed_tx(rsa_signer, b"mined upstream", {"Content-Type": "text/plain"})
    pending = signed_tx(rsa_signer, b"still pending upstream")
    with httpx.Client(base_url=first.url, timeout=60) as a:
        assert a.post("/tx", json=mined.to_json()).status_code == 200
        a.post("/mine")
        a.post("/mine")  # two blocks over it: 2 confirmations upstream
        assert a.post("/tx", json=pending.to_json()).status_code == 200
        upstream_status = a.get(f"/tx/{mined.id}/status").json()
    assert upstream_status["number_of_confirmations"] == 2
    second = start_server(tmp_path / "b", tmp_path / "b.log", "--mine-interval", "0", "--upstream", first.url)
    try:
        with httpx.Client(base_url=second.url, timeout=60) as b:
            header = b.get(f"/tx/{mined.id}")
            assert header.status_code == 200, header.text
            assert header.json()["id"] == mined.id
            assert b.get(f"/tx/{mined.id}/status").json() == upstream_status
            assert b.get(f"/tx/{mined.id}/data_root").text == b64url.encode(mined.data_root)
            assert b.get(f"/tx/{pending.id}").status_code == 202
            assert b.get(f"/tx/{pending.id}/status").text == "Pending"
            # This node's own txs are its own: pending until it mines them, never asked upstream.
            own = signed_tx(rsa_signer, b"posted to the second node")
            assert b.post("/tx", json=own.to_json()).status_code == 200
            assert b.get(f"/tx/{own.id}/status").status_code == 202
            b.post("/mine")
            assert b.get(f"/tx/{own.id}/status").json()["block_height"] == 1
            # Mining here does not move the upstream-confirmed tx into this node's chain.
            assert b.get(f"/tx/{mined.id}/status").json() == upstream_status
            first.stop()
            assert b.get(f"/tx/{mined.id}/status").json() == upstream_status  # cached in gateway.sqlite
        second.stop()
        third = start_server(tmp_path / "b", tmp_path / "b2.log", "--mine-interval", "0", "--upstream", first.url)
        with httpx.Client(base_url=third.url, timeout=60) as b:
            assert b.get(f"/tx/{mined.id}/status").json() == upstream_status  # kept across restarts
        third.stop()
    finally:
        second.stop()


NODE_MODULES = Path(__file__).resolve().parents[1] / "interop" / "node_modules"
ARWEAVE_JS_GET = """
const Arweave = require("arweave");
const url = new URL(process.argv[1]);
const arweave = Arweave.init({host: url.hostname, port: Number(url.port), protocol: "http", logging: false});
(async () => {
  const tx = await arweave.transactions.get(process.argv[2]);  // throws on 202 Pending
  const status = await arweave.transactions.getStatus(process.argv[2]);
  const text = await arweave.transactions.getData(process.argv[2], {decode: true, string: true});
  console.log(JSON.stringify({id: tx.id, status, text}));
})().catch((error) => { console.log(JSON.stringify({error: String(error.type || error.message || error)})); });
"""


@pytest.mark.interop
def test_arweave_js_gets_a_tx_read_through_once_the_upstream_confirmed_it(tmp_path, first, rsa_signer):
    """arweave-js `transactions.get` works on a read-through node as soon as the upstream has mined the tx."""
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "arweave" / "package.json").is_file():
        pytest.fail(f"needs node and arweave in {NODE_MODULES} (npm ci in tests/interop)")
    tx = signed_tx(rsa_signer, b"read through, confirmed upstream", {"Content-Type": "text/plain"})
    with httpx.Client(base_url=first.url, timeout=60) as a:
        assert a.post("/tx", json=tx.to_json()).status_code == 200
        a.post("/mine")
    second = start_server(tmp_path / "b", tmp_path / "b.log", "--mine-interval", "0", "--upstream", first.url)
    try:
        run = subprocess.run(
            [node, "-e", ARWEAVE_JS_GET, second.url, tx.id],
            capture_output=True, text=True, timeout=120, env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
        )  # fmt: skip
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result.get("id") == tx.id, result
        assert result["status"]["status"] == 200 and result["status"]["confirmed"]["block_height"] == 1
        assert result["text"] == "read through, confirmed upstream"
    finally:
        second.stop()


class TamperingUpstream(BaseHTTPRequestHandler):
    """A tiny upstream gateway: serves what `objects` says, true or not.

    objects[id] may hold "tx" (the /tx/{id} JSON), "status" (/tx/{id}/status bytes), "header" (/item/{id}/header bytes),
    "data" (for /raw/{id} and /{id}, with Range), "cut" (the first data answer hangs up
    a third of the way in) and "graphql" (the whole POST /graphql answer).
    """

    objects: dict = {}

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json", extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        entry = self.objects.get(parts[1] if parts[0] in ("tx", "item", "raw") and len(parts) > 1 else parts[0], {})
        if parts[0] == "tx" and parts[2:] == ["status"] and "status" in entry:
            return self._send(200, entry["status"])
        if parts[0] == "tx":
            return self._send(200, json.dumps(entry["tx"]).encode()) if "tx" in entry else self._send(404, b"{}")
        if parts[0] == "item":
            return self._send(200, entry["header"], "application/octet-stream") if "header" in entry else self._send(404, b"{}")
        if "data" not in entry:
            return self._send(404, b"{}")
        data = entry["data"]
        entry["requests"] = entry.get("requests", 0) + 1
        start, end, status = 0, len(data), 200
        wanted = self.headers.get("Range")
        if wanted:
            first, _, last = wanted.split("=")[1].partition("-")
            start, end, status = int(first), (int(last) + 1 if last else len(data)), 206
        body = data[start:end]
        extra = {"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"} if status == 206 else {}
        if entry.get("cut") and entry["requests"] == 1:  # promise the whole body, send a third, hang up
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self._send(status, body, "application/octet-stream", extra)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length))
        answer = self.objects.get(request["variables"]["id"], {}).get("graphql", {"data": {"transaction": None}})
        self._send(200, json.dumps(answer).encode())


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
        header.id: {"header": item[: header.header_size], "data": flipped(item_data)},
    }
    node = start_server(tmp_path / "b", tmp_path / "b.log", "--mine-interval", "0", "--upstream", url)
    try:
        for object_id in (tx.id, header.id):
            response = httpx.get(f"{node.url}/{object_id}", timeout=60)
            assert response.status_code == 502, response.text
            assert response.json()["error"]
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
        assert TamperingUpstream.objects[tx.id]["requests"] >= 2  # cut once, then resumed
    finally:
        node.stop()


def test_upstream_status_answers_of_another_shape_leave_the_tx_pending(tmp_path, tampering_upstream, rsa_signer):
    server, url = tampering_upstream
    good = {"block_height": 3, "block_indep_hash": "b" * 64, "number_of_confirmations": 4}
    answers = [b"not json", b"x" * 100_000, json.dumps({**good, "block_height": "3"}).encode(), json.dumps(good).encode()]
    txs = [signed_tx(rsa_signer, f"status {n}".encode()) for n in range(len(answers))]
    TamperingUpstream.objects = {
        tx.id: {"tx": dict(tx.to_json(), data=""), "data": f"status {n}".encode(), "status": answer}
        for n, (tx, answer) in enumerate(zip(txs, answers))
    }
    node = start_server(tmp_path / "b", tmp_path / "b.log", "--mine-interval", "0", "--upstream", url)
    try:
        for tx in txs[:-1]:
            assert httpx.get(f"{node.url}/tx/{tx.id}/status", timeout=60).status_code == 202
            assert httpx.get(f"{node.url}/tx/{tx.id}", timeout=60).status_code == 202
        assert httpx.get(f"{node.url}/tx/{txs[-1].id}/status", timeout=60).json() == good
        assert "Traceback" not in node.log()
    finally:
        node.stop()


def test_malformed_upstream_answers_are_refused_cleanly(tmp_path, tampering_upstream):
    server, url = tampering_upstream
    item_id = "I" * 42 + "A"
    answers = [
        [], {"data": []}, {"data": {"transaction": []}}, {"data": {"transaction": {"bundledIn": "x"}}},
        {"data": {"transaction": {"bundledIn": {"id": 5}}}}, {"data": {"transaction": {"bundledIn": {"id": "B" * 42 + "A"}}}},
        "not even an object",
    ]
    node = start_server(tmp_path / "b", tmp_path / "b.log", "--mine-interval", "0", "--upstream", url)
    try:
        for answer in answers:
            TamperingUpstream.objects = {item_id: {"graphql": answer}}
            response = httpx.get(f"{node.url}/{item_id}", timeout=60)
            assert response.status_code in (404, 502), (answer, response.status_code, response.text)
            assert response.json()["error"]
        TamperingUpstream.objects = {item_id: {"tx": {"id": 7}}}  # a /tx/{id} that is not a transaction
        response = httpx.get(f"{node.url}/{item_id}", timeout=60)
        assert response.status_code in (404, 502) and response.json()["error"]
    finally:
        node.stop()


def test_unreachable_upstream_is_a_502_not_a_crash(tmp_path):
    import socket

    from fastapi.testclient import TestClient

    from gateway.app import create_app

    from .conftest import make_config

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    app = create_app(make_config(tmp_path, upstreams=[dead]))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/" + "A" * 43)
        assert response.status_code == 502 and response.json()["error"]
        assert client.get("/not-an-id").status_code == 400
        assert client.get("/tx/" + "A" * 43 + "/status").status_code == 502
