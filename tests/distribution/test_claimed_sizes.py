"""Issue 7 points 2 and 3: a claimed data_size costs the node nothing in proportion to it."""

from __future__ import annotations

import hashlib

import httpx

from permastore.protocol import b64url, merkle

from .conftest import claimed_tx, rss_bytes, signed_tx

GIB = 1024**3
RSS_SLACK = 64 * 1024 * 1024  # allocator noise; a list per 256 KiB of 10^12 bytes is ~400 MB


def one_leaf_post(data_size: int, chunk: bytes = b"x" * 1000) -> tuple[bytes, dict]:
    """Return (data_root, POST /chunk body) for a self-made one-leaf proof of chunk claiming data_size.

    The leaf ends where the chunk does, so the proof is valid and proves a chunk of the right
    size: only the layout check can refuse it (before the fix it listed every chunk of data_size).
    """
    data_hash = hashlib.sha256(chunk).digest()
    end = merkle.note(len(chunk))
    path = data_hash + end
    root = hashlib.sha256(hashlib.sha256(data_hash).digest() + hashlib.sha256(end).digest()).digest()
    body = {
        "data_root": b64url.encode(root), "data_size": str(data_size), "data_path": b64url.encode(path),
        "offset": "0", "chunk": b64url.encode(chunk),
    }  # fmt: skip
    return root, body


def test_chunk_with_a_huge_claimed_size_is_refused_cheaply(nodes, rsa_signer):
    node = nodes.start("a")
    before = rss_bytes(node.process.pid)
    with httpx.Client(base_url=node.url, timeout=60) as client:
        for size in (10**12, 10**15, 10**20):
            _, body = one_leaf_post(size)
            response = client.post("/chunk", json=body)
            assert response.status_code == 400, (size, response.text)
            assert response.json()["error"]
        # A pending tx with that data_root and a huge (allowed) size: the proof's bounds are checked
        # against the layout in constant time, not by listing 240,000 chunks.
        size = 60 * GIB
        root, body = one_leaf_post(size)
        assert client.post("/tx", json=claimed_tx(rsa_signer, size, root).to_json()).status_code == 200
        response = client.post("/chunk", json=body)
        assert response.status_code == 400 and "invalid_proof" in response.json()["error"]
    assert rss_bytes(node.process.pid) - before < RSS_SLACK


def test_tx_data_size_limit_is_a_400_and_configurable(nodes, rsa_signer):
    node = nodes.start("a")
    small = nodes.start("b", "--max-data-size", "1000")
    with httpx.Client(timeout=60) as client:
        for size in (10**12, 10**15, 10**20):
            response = client.post(f"{node.url}/tx", json=claimed_tx(rsa_signer, size).to_json())
            assert response.status_code == 400, (size, response.text)
            assert "limit" in response.json()["error"]
        assert client.post(f"{small.url}/tx", json=claimed_tx(rsa_signer, 1001).to_json()).status_code == 400
        tx = signed_tx(rsa_signer, b"x" * 1000)
        assert client.post(f"{small.url}/tx", json=tx.to_json()).status_code == 200
        _, body = one_leaf_post(1001)
        assert "data_size_too_big" in client.post(f"{small.url}/chunk", json=body).json()["error"]


def test_pending_headers_take_no_weave_space_and_block_no_writer(nodes, rsa_signer):
    node = nodes.start("a")
    with httpx.Client(base_url=node.url, timeout=60) as client:
        huge = claimed_tx(rsa_signer, 50 * GIB)
        assert client.post("/tx", json=huge.to_json()).status_code == 200
        assert client.get(f"/tx/{huge.id}/offset").status_code == 404  # no data, no weave bytes
        honest = signed_tx(rsa_signer, b"honest data after a huge claim")
        assert client.post("/tx", json=honest.to_json()).status_code == 200
        assert client.get(f"/tx/{honest.id}/offset").json() == {"size": "30", "offset": "29"}
        assert client.get("/info").status_code == 200
