"""Streamed ANS-104 uploads on a real server: refused from their first bytes, spools bounded (issue 7 point 10)."""

from __future__ import annotations

import json
import os
import socket
import struct

import httpx
import pytest

from gateway.uploads import ItemHeaderCheck
from permastore.protocol.errors import LimitExceeded, MalformedData
from tests.helpers.servers import start_server

from .conftest import signed_item

GIB = 1024**3


def address(server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def open_upload(server, length: int, first: bytes) -> socket.socket:
    """Start a POST /tx of an octet-stream body of the declared length; send only its first bytes."""
    sock = socket.create_connection(address(server))
    sock.settimeout(30)
    sock.sendall(
        b"POST /tx HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        + b"Content-Length: %d\r\n\r\n" % length + first
    )
    return sock


def answer_of(sock: socket.socket) -> tuple[int, dict, bytes]:
    """Read the answer the server sends while the body is still incomplete (it closes after it)."""
    received = b""
    while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < content_length(received):
        piece = sock.recv(65536)
        assert piece, f"connection closed without a full answer: {received[:300]!r}"
        received += piece
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body[: content_length(received)]), head.lower()


def content_length(received: bytes) -> int:
    for line in received.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


@pytest.fixture
def server(tmp_path):
    running = start_server(tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0")
    yield running
    running.stop()


@pytest.fixture
def bounded(tmp_path):
    """A node admitting two streamed uploads at once, 3 MiB of them together."""
    running = start_server(
        tmp_path / "data", tmp_path / "server.log", "--mine-interval", "0",
        "--max-uploads", "2", "--max-spool-bytes", str(3 * 1024 * 1024),
    )
    yield running
    running.stop()


def spooled_files(tmp_path) -> list:
    return list((tmp_path / "data" / "tmp").glob("*"))


@pytest.mark.parametrize(
    "first, reason",
    [
        (b"\x07\x00" + b"\x00" * 4094, "signature type 7"),  # no such signature type: two bytes tell
        (b"\x02\x00" + b"\x00" * 96 + b"\x05", "target flag"),  # ed25519 sizes, then a flag that is neither 0 nor 1
        (b"\x02\x00" + b"\x00" * 96 + b"\x00\x00" + struct.pack("<QQ", 1, 10**9), "tag bytes"),  # 1 GB of tags declared
        (b"\x02\x00" + b"\x00" * 96 + b"\x00\x00" + struct.pack("<QQ", 1, 4) + b"\xff\xff\xff\xff", "tag"),  # bad Avro
    ],
)
def test_bad_items_are_refused_after_their_first_bytes_not_after_a_gib(server, tmp_path, first, reason):
    with open_upload(server, GIB, first) as sock:  # declares 1 GiB, sends a few bytes, waits
        status, body, head = answer_of(sock)
    assert status == 400 and reason in body["error"], body
    assert b"connection: close" in head  # the rest of the body is not read
    assert spooled_files(tmp_path) == []


def test_concurrent_uploads_and_their_spool_are_bounded(bounded, tmp_path, ed_signer):
    server = bounded
    item = signed_item(ed_signer, os.urandom(1_000_000))
    held = [open_upload(server, len(item), item[:5000]) for _ in range(2)]  # two slow uploads hold both slots
    try:
        with open_upload(server, len(item), item[:5000]) as third:
            status, body, head = answer_of(third)
        assert status == 503 and "too many uploads" in body["error"] and b"retry-after" in head
        for sock in held:  # the held ones complete normally
            sock.sendall(item[5000:])
            status, body, _ = answer_of(sock)
            assert status == 200 and body["data_size"] == 1_000_000
    finally:
        for sock in held:
            sock.close()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        headers = {"Content-Type": "application/octet-stream"}
        big = signed_item(ed_signer, os.urandom(4 * 1024 * 1024))  # larger than the whole spool
        refused = client.post("/tx", content=big, headers=headers)
        assert refused.status_code == 413 and "larger than the spool" in refused.json()["error"]
        chunked = client.post("/tx", content=iter([big[:1_000_000], big[1_000_000:]]), headers=headers)
        assert chunked.status_code == 413  # no Content-Length: counted as it arrives
        half = signed_item(ed_signer, os.urandom(2 * 1024 * 1024))
        with open_upload(server, len(half), half[:5000]) as first:  # 2 MiB of the 3 MiB reserved
            other = client.post("/tx", content=half, headers=headers)
            assert other.status_code == 503 and "spool full" in other.json()["error"]
            first.sendall(half[5000:])
            assert answer_of(first)[0] == 200
        assert client.post("/tx", content=signed_item(ed_signer, b"fits"), headers=headers).status_code == 200
    assert spooled_files(tmp_path) == []


def test_header_check_refuses_as_early_as_the_bytes_allow(ed_signer):
    item = signed_item(ed_signer, b"data", {"A": "b"})
    check = ItemHeaderCheck()
    for at in range(0, len(item), 3):
        check.feed(item[at : at + 3])
    assert check.finish().tags[0].value == b"b"
    with pytest.raises(MalformedData):
        ItemHeaderCheck().feed(b"\x09\x00")
    with pytest.raises(LimitExceeded):
        ItemHeaderCheck().feed(b"\x02\x00" + b"\x00" * 96 + b"\x00\x00" + struct.pack("<QQ", 10**6, 0))
    with pytest.raises(MalformedData):
        ItemHeaderCheck().finish()
