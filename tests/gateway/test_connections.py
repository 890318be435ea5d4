"""Connection guards on a real server: header size and count, URL length, header and body read timeouts,
idle (half-open) connections and the connection cap (issue 7 point 6)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.helpers.servers import start_server

MAX_CONNECTIONS = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("connections")
    running = start_server(
        root / "data", root / "server.log", "--mine-interval", "0",
        "--header-timeout", "2", "--body-timeout", "2", "--max-connections", str(MAX_CONNECTIONS),
        "--keep-alive-timeout", "6",
    )
    yield running
    running.stop()
    assert "Traceback" not in running.log()


def address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def read_answer(sock: socket.socket, timeout: float = 20) -> tuple[int, dict]:
    """Read until the server closes; return the status and the JSON body."""
    sock.settimeout(timeout)
    received = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        received += piece
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), received[:200]
    return int(head.split()[1]), json.loads(body)


def send_quietly(sock: socket.socket, data: bytes) -> int:
    """Send data until the server stops taking it; return how much went out."""
    sent = 0
    try:
        for at in range(0, len(data), 65536):
            sock.sendall(data[at : at + 65536])
            sent += min(65536, len(data) - at)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def test_huge_and_endless_headers_are_431_and_bounded(server):
    with socket.create_connection(address(server)) as sock:
        sock.settimeout(20)
        head = b"GET /info HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (16 * 1024 * 1024) + b"\r\n\r\n"
        sent = send_quietly(sock, head)
        status, body = read_answer(sock)
    assert status == 431 and "headers larger" in body["error"]
    assert sent < len(head)  # the server stopped reading long before 16 MiB
    with socket.create_connection(address(server)) as sock:  # a header line that never ends
        sock.settimeout(20)
        sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        sent = send_quietly(sock, b"b" * (8 * 1024 * 1024))
        status, _ = read_answer(sock)
    assert status == 431 and sent < 8 * 1024 * 1024
    many = b"GET /info HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(200)) + b"\r\n"
    with socket.create_connection(address(server)) as sock:
        sock.sendall(many)
        status, body = read_answer(sock)
    assert status == 431 and "more than" in body["error"]
    with socket.create_connection(address(server)) as sock:
        sock.sendall(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _ = read_answer(sock)
    assert status == 414
    ordinary = httpx.get(f"{server.url}/info", headers={f"X-{n}": "v" * 100 for n in range(60)})
    assert ordinary.status_code == 200  # ordinary headers are far inside the limits


def test_slow_heads_silent_clients_and_stalled_bodies_are_timed_out(server):
    with socket.create_connection(address(server)) as sock:
        sock.sendall(b"GET /info HTTP/1.1\r\nHost: x\r\n")  # ... and the blank line never comes
        status, body = read_answer(sock)
    assert status == 408 and "headers not received" in body["error"]
    with socket.create_connection(address(server)) as sock:  # connects and says nothing at all
        status, _ = read_answer(sock)
    assert status == 408
    with socket.create_connection(address(server)) as sock:  # a header trickled a byte a second
        sock.settimeout(20)
        began = time.monotonic()
        try:
            for byte in b"GET /info HTTP/1.1\r\nHost: a-slow-client.example\r\n":
                sock.send(bytes([byte]))
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _ = read_answer(sock)
    assert status == 408 and time.monotonic() - began < 20
    with socket.create_connection(address(server)) as sock:
        sock.sendall(b"POST /tx HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\"")
        status, body = read_answer(sock)
    assert status == 408 and "body paused" in body["error"]
    assert httpx.get(f"{server.url}/info").status_code == 200


def test_idle_connections_are_bounded_and_closed(server):
    held = [socket.create_connection(address(server)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)
        with socket.create_connection(address(server)) as extra:
            status, body = read_answer(extra)
        assert status == 503 and "too many connections" in body["error"]
        for sock in held:  # every silent connection is closed after the header timeout
            status, _ = read_answer(sock)
            assert status == 408
    finally:
        for sock in held:
            sock.close()
    assert httpx.get(f"{server.url}/info").status_code == 200


def test_keep_alive_connections_stay_between_requests_and_close_when_idle(server):
    request = b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(address(server)) as sock:
        sock.settimeout(20)
        for pause in (0, 3.5):  # longer than the header timeout, shorter than keep-alive: the same connection
            time.sleep(pause)
            sock.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):  # /info: one JSON object
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:100]
        began = time.monotonic()
        assert sock.recv(65536) == b""  # idle past --keep-alive-timeout: closed by the server
        assert 4 < time.monotonic() - began < 15
