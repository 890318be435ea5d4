"""The uvicorn fast path is fenced: any uvicorn other than the tested minor gets the plain protocol,
and a server on it still answers correctly (slower, never wrong)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn

from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.server import fast_path_refusal, http_protocol


def test_only_the_tested_uvicorn_minor_gets_the_fast_protocol(tmp_path):
    app = create_app(GatewayConfig(data_dir=tmp_path / "data", mine_interval=0))
    limits = GatewayConfig(data_dir=tmp_path / "data").connections
    assert fast_path_refusal(uvicorn.__version__) is None  # the pinned version: fast path on
    assert not isinstance(http_protocol(app, limits), str)
    for newer in ("0.55.0", "1.0.0", "0.53.9"):
        assert "not the 0.54.x" in fast_path_refusal(newer)
        assert http_protocol(app, limits, version=newer) == "h11"


def test_a_server_on_the_fallback_protocol_serves_uploads_and_reads(tmp_path, rsa_signer):
    from permastore.protocol import ans104

    app = create_app(GatewayConfig(data_dir=tmp_path / "data", mine_interval=0))
    limits = GatewayConfig(data_dir=tmp_path / "data").connections
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, http=http_protocol(app, limits, version="9.9.9"), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        item = ans104.build_item(rsa_signer, b"through h11", [])
        posted = httpx.post(f"{base}/tx", content=item, headers={"Content-Type": "application/octet-stream"})
        assert posted.status_code == 200, posted.text
        item_id = posted.json()["id"]
        for _ in range(3):  # what the fast path would have cached is answered by the app each time
            answer = httpx.get(f"{base}/{item_id}")
            assert answer.status_code == 200 and answer.content == b"through h11"
        assert httpx.get(f"{base}/{item_id}", headers={"Range": "bytes=8-10"}).content == b"h11"
    finally:
        server.should_exit = True
        thread.join(30)
