"""Routes and shapes real Arweave and ar.io clients expect, and inputs that used to be 500s; on a real server."""

from __future__ import annotations

import os
import re
import socket

import httpx
import pytest

from permastore.protocol import ans104
from permastore.protocol.bundle import build_bundle
from tests.helpers.servers import start_server

from .conftest import chunk_posts, header_only, signed_item, signed_tx

B64URL_43 = re.compile(r"^[A-Za-z0-9_-]{43}$")
B64URL_64 = re.compile(r"^[A-Za-z0-9_-]{64}$")
OCTETS = {"Content-Type": "application/octet-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("conformance")
    running = start_server(root / "data", root / "server.log", "--mine-interval", "0")
    yield running
    running.stop()
    assert "Traceback" not in running.log()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def test_height_current_block_and_block_json_fields(client, rsa_signer):
    genesis = client.get("/block/height/0").json()
    tx = signed_tx(rsa_signer, b"in a block")
    assert client.post("/tx", json=tx.to_json()).status_code == 200
    client.post("/mine")
    height = client.get("/height")
    assert height.status_code == 200 and height.json() == client.get("/info").json()["height"] >= 1
    current = client.get("/current_block")
    assert current.status_code == 200 and current.json() == client.get("/block/current").json()
    for block in (genesis, current.json()):  # ar.io's Block schema: these are never ""
        for field in ("nonce", "tx_root", "reward_addr"):
            assert B64URL_43.match(block[field]), (field, block[field])
        for field in ("previous_block", "hash", "indep_hash", "wallet_list", "hash_list_merkle"):
            assert B64URL_64.match(block[field]), (field, block[field])
        assert isinstance(block["poa"], dict) and isinstance(block["tags"], list)
    assert current.json()["previous_block"] != genesis["previous_block"]
    assert tx.id in current.json()["txs"]


def test_head_on_every_get_data_route(client, rsa_signer):
    data = os.urandom(300_000)
    tx = signed_tx(rsa_signer, data, {"Content-Type": "application/x-test"})
    assert client.post("/tx", json=header_only(tx)).status_code == 200
    for post in chunk_posts(tx, data):
        assert client.post("/chunk", json=post).status_code == 200
    client.post("/mine")
    offset = int(client.get(f"/tx/{tx.id}/offset").json()["offset"])
    for path in (f"/{tx.id}", f"/raw/{tx.id}", f"/tx/{tx.id}", f"/tx/{tx.id}/status", f"/tx/{tx.id}/data",
                 f"/tx/{tx.id}/offset", f"/tx/{tx.id}/data_root", f"/chunk/{offset}", f"/chunk/{offset}/data",
                 "/info", "/height", "/current_block", "/block/current", "/tx_anchor"):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code == 200, (path, head.status_code, get.status_code)
        assert head.content == b"", path
        assert head.headers["content-type"] == get.headers["content-type"], path
        if "content-length" in head.headers:
            assert head.headers["content-length"] == get.headers["content-length"], path
    assert client.head(f"/chunk/{offset + 10**9}").status_code == 404


def test_status_of_a_data_item_comes_from_the_bundle_holding_it(client, rsa_signer, ed_signer):
    items = [signed_item(ed_signer, b"first"), signed_item(ed_signer, b"second")]
    bundle = signed_tx(rsa_signer, build_bundle(items), {"Bundle-Format": "binary", "Bundle-Version": "2.0.0"})
    assert client.post("/tx", json=bundle.to_json()).status_code == 200
    item_id = ans104.parse_header(items[0]).id
    assert client.get(f"/tx/{item_id}/status").status_code == 202  # its bundle is pending
    client.post("/mine")
    client.post("/mine")
    bundle_status = client.get(f"/tx/{bundle.id}/status").json()
    item_status = client.get(f"/tx/{item_id}/status")
    assert item_status.status_code == 200 and item_status.json() == bundle_status
    assert bundle_status["number_of_confirmations"] == 2
    alone = client.post("/tx", content=signed_item(ed_signer, b"posted alone"), headers=OCTETS).json()["id"]
    assert client.get(f"/tx/{alone}/status").status_code == 202
    client.post("/mine")
    assert client.get(f"/tx/{alone}/status").json()["block_height"] == client.get("/height").json()


def test_multi_range_requests_are_206_multipart_byteranges(client, ed_signer):
    data = os.urandom(600_000)
    object_id = client.post("/tx", content=signed_item(ed_signer, data, {"Content-Type": "text/plain"}), headers=OCTETS).json()["id"]
    for spans in ([(0, 9), (20, 29)], [(500_000, 599_999), (0, 0), (262_140, 262_150)]):
        header = "bytes=" + ",".join(f"{a}-{b}" for a, b in spans)
        response = client.get(f"/{object_id}", headers={"Range": header})
        assert response.status_code == 206
        kind, _, boundary = response.headers["content-type"].partition("; boundary=")
        assert kind == "multipart/byteranges" and boundary
        assert int(response.headers["content-length"]) == len(response.content)
        parts = response.content.split(f"--{boundary}".encode())
        assert parts[-1] == b"--\r\n" and len(parts) == len(spans) + 2
        for (start, end), part in zip(spans, parts[1:-1]):
            head, _, body = part.partition(b"\r\n\r\n")
            assert b"Content-Type: text/plain" in head and f"Content-Range: bytes {start}-{end}/{len(data)}".encode() in head
            assert body == data[start : end + 1] + b"\r\n"
        head = client.head(f"/{object_id}", headers={"Range": header})
        assert head.status_code == 206 and head.headers["content-length"] == response.headers["content-length"]
    one = client.get(f"/{object_id}", headers={"Range": "bytes=5-9,900000-"})  # one satisfiable: a plain 206
    assert one.status_code == 206 and one.content == data[5:10] and one.headers["content-range"] == f"bytes 5-9/{len(data)}"
    overlapping = client.get(f"/{object_id}", headers={"Range": "bytes=0-9,5-14"})
    assert overlapping.status_code == 200 and overlapping.content == data


def raw_request(server, request: bytes) -> tuple[int, bytes]:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        received = b""
        while piece := sock.recv(65536):
            received += piece
            head, _, body = received.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: (\d+)", head)
            if length and len(body) >= int(length.group(1)):
                break
    return int(received.split()[1]), received.partition(b"\r\n\r\n")[2]


def test_inputs_that_were_500s_are_4xx_with_a_json_reason(server, client, rsa_signer, ed_signer):
    object_id = client.post("/tx", content=signed_item(ed_signer, b"x" * 1000), headers=OCTETS).json()["id"]
    for offset in (2**63, 2**63 + 5, 2**64, 10**39):
        for path in (f"/chunk/{offset}", f"/chunk/{offset}/data"):
            response = client.get(path)
            assert response.status_code == 400 and response.json()["error"], (path, response.text)
    for header in ("bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000,
                   "bytes=1-" + "9" * 5000 + ",3-4", "bytes=" + "1" * 5000 + "-" + "2" * 5000):
        response = client.get(f"/{object_id}", headers={"Range": header})
        assert response.status_code in (200, 206, 416), (header[:30], response.status_code)  # 200: overlapping ranges
        if response.status_code == 416:
            assert response.json()["error"]
    for value in (b"bytes=\xb2-3", b"bytes=0-\xb2", b"bytes=\xb9\xb2\xb3-"):  # superscript digits, as raw header bytes
        status, body = raw_request(server, b"GET /" + object_id.encode() + b" HTTP/1.1\r\nHost: x\r\nRange: " + value + b"\r\n\r\n")
        assert status == 416 and b'"error"' in body, (value, status, body[:200])
    completion = b'{"model": "%s", "prompt": "hi", "max_tokens": 1}' % (b"A" * 43)
    for value in (b"\xb2", b"1\xb9", b"9" * 5000):  # X-Payment is read before the model is looked up
        request = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Payment: " + value
                   + b"\r\nContent-Length: %d\r\n\r\n" % len(completion) + completion)
        status, body = raw_request(server, request)
        assert status == 400 and b"payment" in body and b'"error"' in body, (value[:10], status, body[:200])
    base = signed_tx(rsa_signer, b"decimal fields").to_json()
    for field in ("quantity", "reward", "data_size", "format"):
        for value in ("5" * 5000, "\xb2", "1" + "\u0663" * 3):
            response = client.post("/tx", json={**base, field: value})
            assert response.status_code == 400 and response.json()["error"], (field, value[:10], response.text[:200])
    nested = b"[" * 20000 + b"]" * 20000
    deep_object = b'{"a":' * 20000 + b"1" + b"}" * 20000
    for path in ("/tx", "/chunk", "/graphql"):
        for body in (nested, deep_object):
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 400 and response.json()["error"], (path, response.text[:200])
    posts = [path for path, ops in client.get("/openapi.json").json()["paths"].items() if "post" in ops]
    assert {"/tx", "/chunk", "/graphql"} <= set(posts)
    for path in posts:  # every POST route the node has, inference ones included
        path = re.sub(r"\{[^}]+\}", "A" * 43, path)
        for body in (nested, deep_object):
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            # 501: a route that is there to say it is not supported (Ollama's create, push, blobs)
            assert response.status_code < 500 or response.status_code == 501, (path, response.status_code, response.text[:200])
            assert response.headers["content-type"].startswith("application/json"), path
            if response.status_code >= 400:
                assert response.json()["error"], path
    deep_variables = b'{"query": "{ transactions { edges { cursor } } }", "variables": {"a": ' + nested + b"}}"
    assert client.post("/graphql", content=deep_variables, headers={"Content-Type": "application/json"}).status_code == 400
    query = "{" + "a {" * 20000 + "b" + "}" * 20000 + "}"
    assert client.post("/graphql", json={"query": query}).status_code == 400
    assert client.get("/graphql", params={"query": "{" * 5000}).status_code == 400
