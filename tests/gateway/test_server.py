"""The real server: `permastore serve` on 127.0.0.1, spoken to over HTTP with httpx."""

import hashlib
import os
import signal
import subprocess

import httpx
import pytest

from permastore.protocol import b64url
from tests.helpers.servers import serve_command, start_server

from .conftest import chunk_posts, header_only, signed_item, signed_tx


@pytest.fixture
def server(tmp_path):
    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0")
    yield running
    running.stop()


def test_serves_uploads_over_http_and_stops_on_sigterm(tmp_path, rsa_signer):
    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0.5")
    assert running.url.startswith("http://127.0.0.1:")
    data = os.urandom(600_000)
    tx = signed_tx(rsa_signer, data, {"Content-Type": "application/x-big"})
    with httpx.Client(base_url=running.url, timeout=30) as client:
        assert client.post("/tx", json=header_only(tx)).status_code == 200
        for post in chunk_posts(tx, data):
            assert client.post("/chunk", json=post).status_code == 200
        with client.stream("GET", f"/{tx.id}") as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/x-big"
            assert b"".join(response.iter_bytes()) == data
        part = client.get(f"/{tx.id}", headers={"Range": "bytes=262000-262999"})
        assert part.status_code == 206 and part.content == data[262000:263000]
        assert client.get(f"/{tx.id}").headers["x-ar-io-digest"] == b64url.encode(hashlib.sha256(data).digest())
        # The interval miner puts the tx into a block without /mine.
        for _ in range(100):
            if client.get(f"/tx/{tx.id}/status").status_code == 200:
                break
            import time

            time.sleep(0.1)
        assert client.get(f"/tx/{tx.id}/status").json()["block_height"] >= 1
    assert running.stop(signal.SIGTERM) == 0
    assert "Traceback" not in running.log()


def test_sigint_stops_cleanly_and_data_survives_restart(tmp_path, ed_signer):
    running = start_server(tmp_path / "data", tmp_path / "a.log", "--mine-interval", "0")
    item = signed_item(ed_signer, b"kept across restarts")
    response = httpx.post(f"{running.url}/tx", content=item, headers={"Content-Type": "application/octet-stream"})
    item_id = response.json()["id"]
    assert running.stop(signal.SIGINT) == 0
    again = start_server(tmp_path / "data", tmp_path / "b.log", "--mine-interval", "0")
    try:
        assert httpx.get(f"{again.url}/{item_id}").content == b"kept across restarts"
    finally:
        again.stop()


def test_bad_arguments_are_one_line_errors(tmp_path):
    result = subprocess.run(
        serve_command(tmp_path / "data", "--upstream", "ftp://nowhere"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "invalid upstream" in result.stderr and "Traceback" not in result.stderr
    busy = start_server(tmp_path / "data", tmp_path / "busy.log", "--mine-interval", "0")
    try:
        port = busy.url.rsplit(":", 1)[1]
        command = serve_command(tmp_path / "other", "--mine-interval", "0")
        command[command.index("--port") + 1] = port
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "cannot listen" in result.stderr and "Traceback" not in result.stderr
    finally:
        busy.stop()


def flip_byte_of(data_dir, needle: bytes) -> None:
    """Flip one byte of the stored copy of needle inside the segment files (as disk rot would)."""
    for segment in (data_dir / "segments").iterdir():
        raw = segment.read_bytes()
        at = raw.find(needle)
        if at >= 0:
            segment.chmod(0o644)
            with open(segment, "r+b") as f:
                f.seek(at + len(needle) // 2)
                f.write(bytes([raw[at + len(needle) // 2] ^ 0xFF]))
            return
    raise AssertionError("needle not found in any segment")


def test_corrupt_chunks_are_never_served(tmp_path, ed_signer):
    small = os.urandom(100_000)
    big = os.urandom(12 * 1024 * 1024)
    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0")
    try:
        ids = []
        for data in (small, big):
            item = signed_item(ed_signer, data)
            response = httpx.post(f"{running.url}/tx", content=item, headers={"Content-Type": "application/octet-stream"}, timeout=60)
            ids.append(response.json()["id"])
        flip_byte_of(tmp_path / "data", small[5000:5064])
        at = 9 * 1024 * 1024 + 1000  # past the first batch, so the failure comes mid-stream
        flip_byte_of(tmp_path / "data", big[at : at + 64])

        response = httpx.get(f"{running.url}/{ids[0]}")
        assert response.status_code == 500 and "verification" in response.json()["error"]
        received = b""
        with pytest.raises(httpx.HTTPError):
            with httpx.stream("GET", f"{running.url}/{ids[1]}", timeout=60) as stream:
                assert stream.status_code == 200
                for piece in stream.iter_bytes():
                    received += piece
        assert len(received) < len(big) and big.startswith(received)  # cut short, never a wrong byte
        ranged = httpx.get(f"{running.url}/{ids[1]}", headers={"Range": "bytes=0-1000"})
        assert ranged.status_code == 206 and ranged.content == big[:1001]  # intact chunks still serve
    finally:
        running.stop()


def test_body_limits_are_configurable_on_the_command_line(tmp_path, ed_signer):
    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0", "--max-item-body", "5000")
    try:
        small = signed_item(ed_signer, b"fits")
        big = signed_item(ed_signer, os.urandom(6000))
        headers = {"Content-Type": "application/octet-stream"}
        assert httpx.post(f"{running.url}/tx", content=small, headers=headers).status_code == 200
        refused = httpx.post(f"{running.url}/tx", content=big, headers=headers)
        assert refused.status_code == 413 and refused.json()["error"]
    finally:
        running.stop()


def test_concurrent_chunk_uploads_and_reads(tmp_path, rsa_signer):
    from concurrent.futures import ThreadPoolExecutor

    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0")
    try:
        uploads = [(tx, data) for data in (os.urandom(2_000_000), os.urandom(1_100_000)) for tx in [signed_tx(rsa_signer, data)]]
        with httpx.Client(base_url=running.url, timeout=60) as client:
            for tx, _ in uploads:
                assert client.post("/tx", json=header_only(tx)).status_code == 200
        posts = [post for tx, data in uploads for post in chunk_posts(tx, data)]
        posts += posts[:4]  # some chunks arrive twice, as a retrying uploader sends them

        def post_chunk(body):
            with httpx.Client(base_url=running.url, timeout=60) as client:
                return client.post("/chunk", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(post_chunk, posts)) == {200}
            fetched = list(pool.map(lambda u: httpx.get(f"{running.url}/{u[0].id}", timeout=60).content, uploads * 4))
        assert fetched == [data for _, data in uploads] * 4
    finally:
        running.stop()
