"""Cached small objects answered by the protocol itself: same bytes as the app, in order, on a real server."""

import asyncio
import os
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from uvicorn.server import ServerState

from gateway.fast_protocol import with_cache
from gateway.fastpath import SmallObjectCache
from permastore.protocol.signers import Ed25519Signer
from tests.helpers.servers import start_server

from .conftest import signed_item


@pytest.fixture
def server(tmp_path):
    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0")
    yield running
    running.stop()


def _upload(client, signer, data: bytes, content_type: str) -> str:
    raw = signed_item(signer, data, {"Content-Type": content_type})
    return client.post("/tx", content=raw, headers={"Content-Type": "application/octet-stream"}).json()["id"]


def _read_responses(sock: socket.socket, count: int, heads: set[int]) -> list[tuple[bytes, dict, bytes]]:
    """Read count HTTP/1.1 responses (status line, headers, body); those whose index is in heads have no body."""
    buffer, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            piece = sock.recv(65536)
            assert piece, f"connection closed after {len(answers)} answers"
            buffer += piece
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines)
        length = 0 if len(answers) in heads else int(headers.get(b"content-length", b"0"))
        while len(buffer) < length:
            buffer += sock.recv(65536)
        answers.append((status, headers, buffer[:length]))
        buffer = buffer[length:]
    return answers


def test_cached_answers_equal_routed_ones(server, ed_signer):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        object_id = _upload(client, ed_signer, b"<p>small</p>", "text/html")
        first = client.get(f"/{object_id}")  # through the app: read, verified, cached
        for origin in ({}, {"Origin": "https://app.example"}):
            again = client.get(f"/{object_id}", headers=origin)  # from the cache, by the protocol
            assert again.status_code == 200 and again.content == b"<p>small</p>"
            expected = {k: v for k, v in first.headers.items() if k != "date"}
            if origin:
                routed = client.get(f"/{object_id}?via=app", headers=origin)  # a query string takes the app path
                expected = {k: v for k, v in routed.headers.items() if k != "date"}
            assert {k: v for k, v in again.headers.items() if k != "date"} == expected
            assert "date" in again.headers
        head = client.head(f"/{object_id}")
        assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == "12"
        part = client.get(f"/{object_id}", headers={"Range": "bytes=3-7"})
        assert part.status_code == 206 and part.content == b"small"
        assert client.get(f"/{object_id}", headers={"If-None-Match": f'"{object_id}"'}).status_code == 304


def test_pipelined_requests_are_answered_in_order(server, ed_signer):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ids = [_upload(client, ed_signer, f"object {n}".encode(), "text/plain") for n in range(2)]
        for object_id in ids:
            client.get(f"/{object_id}")
    host, port = server.url.removeprefix("http://").split(":")
    requests = [
        f"GET /{ids[0]} HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /info HTTP/1.1\r\nHost: x\r\n\r\n",  # the app answers this one
        f"HEAD /{ids[1]} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /{ids[1]} HTTP/1.1\r\nHost: x\r\n\r\n",
        f"GET /{ids[0]} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-5\r\n\r\n",
        "GET /" + "A" * 43 + " HTTP/1.1\r\nHost: x\r\n\r\n",  # not cached, not stored: the app's 404
        f"GET /{ids[0]} HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        for _ in range(3):  # keep-alive: the same connection again and again
            sock.sendall("".join(requests).encode())
            answers = _read_responses(sock, len(requests), heads={2})
            assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 4 + [b"HTTP/1.1 206 Partial Content", b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK"]
            assert answers[0][2] == b"object 0" and answers[3][2] == b"object 1" and answers[6][2] == b"object 0"
            assert b"network" in answers[1][2] and answers[4][2] == b"object"
            assert answers[2][1][b"content-length"] == b"8"
    # HTTP/1.0 asks for the connection to close after the answer: the app path does that.
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"GET /{ids[0]} HTTP/1.0\r\n\r\n".encode())
        received = b""
        while piece := sock.recv(65536):
            received += piece
        assert received.startswith(b"HTTP/1.1 200 OK") and received.endswith(b"object 0")


class _Transport(asyncio.Transport):
    """A transport that keeps what is written, so the protocol can be driven without a socket."""

    def __init__(self):
        super().__init__()
        self.written = b""

    def write(self, data):
        self.written += data

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 1984)}.get(name, default)

    def is_closing(self):
        return False

    def close(self):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


def test_hits_never_reach_the_app_and_misses_always_do():
    cache = SmallObjectCache()
    cache.put("h" * 43, b"cached", {"Content-Type": "text/plain", "Content-Length": "6"})
    called = []

    async def app(scope, receive, send):
        called.append(scope["path"])
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    async def drive():
        config = uvicorn.Config(app, lifespan="off", log_level="warning")
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"today")]
        protocol = with_cache(cache)(config, state, {})
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET /" + b"h" * 43 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert not state.tasks  # answered inside the parser callback: no ASGI task
        assert transport.written.startswith(b"HTTP/1.1 200 OK\r\ndate: today\r\ncontent-type: text/plain\r\n")
        assert transport.written.endswith(b"\r\n\r\ncached")
        protocol.data_received(b"GET /" + b"m" * 43 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.gather(*state.tasks)
        assert called == ["/" + "m" * 43]
        protocol.connection_lost(None)

    asyncio.run(drive())


def test_header_values_with_control_bytes_are_never_cached():
    cache = SmallObjectCache()
    cache.put("x" * 43, b"body", {"Content-Type": "text/html\r\nSet-Cookie: a=b"})
    assert cache.get("x" * 43) is None


def test_a_cached_object_is_not_served_once_its_stored_copy_is_found_corrupt(tmp_path, ed_signer):
    from .test_server import flip_byte_of

    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0", "--cache-reverify", "2")
    try:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            body = os.urandom(20_000)  # stored zstd-free: random bytes do not compress
            ids = [_upload(client, signer, body, "text/plain") for signer in (ed_signer, Ed25519Signer(bytes(32)))]
            other = os.urandom(20_000)
            other_id = _upload(client, ed_signer, other, "text/plain")
            for object_id in ids + [other_id]:
                assert client.get(f"/{object_id}").content in (body, other)  # read, verified, cached
            flip_byte_of(tmp_path / "data", body[5000:5064])  # one stored chunk, shared by both IDs
            flip_byte_of(tmp_path / "data", other[5000:5064])
            assert client.get(f"/{ids[0]}").content == body  # from memory: nobody has looked at the disk yet
            found = client.get(f"/raw/{ids[0]}")  # a read of the stored copy finds it bad
            assert found.status_code == 500 and "verification" in found.json()["error"]
            for object_id in ids:  # both IDs with that content are out of the cache
                again = client.get(f"/{object_id}")
                assert again.status_code == 500, object_id
            assert client.get(f"/{other_id}").status_code == 200  # still cached; not yet re-verified
            time.sleep(3)  # past --cache-reverify: the next hit has its store copy checked in the background
            statuses = []
            for _ in range(100):
                statuses.append(client.get(f"/{other_id}").status_code)
                if statuses[-1] == 500:
                    break
                time.sleep(0.1)
            assert statuses[-1] == 500 and all(status == 200 for status in statuses[:-1])  # found bad: never again from memory
            assert "failed verification" in running.log()
    finally:
        running.stop()


@pytest.mark.slow
def test_many_tiny_uploads_read_back_keep_the_cache_within_its_budget(tmp_path, ed_signer):
    """Issue 7 point 15: uploads read back grew the server ~1 KB each; the cache budget counted bodies only.

    A real uvicorn server with the gateway's protocol, in this process so the cache can be weighed.
    """
    from gateway.app import create_app

    from .conftest import make_config

    budget = 100_000
    app = create_app(make_config(tmp_path, small_cache_bytes=budget))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=with_cache(app.fast_path.cache), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        url = "http://127.0.0.1:%d" % sock.getsockname()[1]
        with httpx.Client(base_url=url, timeout=60) as client:
            for n in range(1500):
                item = signed_item(ed_signer, b"", {"Content-Type": "text/plain", "N": str(n)})  # empty: costs a bodies-only budget nothing
                object_id = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"}).json()["id"]
                assert client.get(f"/{object_id}").status_code == 200
                assert client.get(f"/{object_id}").status_code == 200  # answered from the cache
        entries = list(app.fast_path.cache._entries.values())
        held = sum(len(entry.body) + len(entry.header_lines) + 43 for entry in entries)  # a floor of what they hold
        assert held <= budget, f"{len(entries)} cached answers hold at least {held} bytes; the budget is {budget}"
        assert len(entries) > 10  # the cache still works
    finally:
        server.should_exit = True
        thread.join(timeout=30)
