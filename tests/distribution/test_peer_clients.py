"""The peers' HTTP clients: http:// peers skip the CA store, https:// peers always get a verifying client."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from permastore.sources.limits import FetchLimits
from permastore.sources.peer_set import PeerSet
from permastore.sources.upstream import make_client


class FirstBytes:
    """A TCP listener on 127.0.0.1 that records the first bytes of each connection, then hangs up."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.seen.append(conn.recv(5))
                except OSError:
                    self.seen.append(b"")

    def close(self):
        self.sock.close()


@pytest.fixture
def listener():
    server = FirstBytes()
    yield server
    server.close()


def test_the_plain_client_never_opens_an_https_connection(listener):
    with make_client(FetchLimits(), 4, tls=False) as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            client.get(f"https://127.0.0.1:{listener.port}/info")
    assert listener.seen == []  # refused before connecting, not sent unverified


def test_an_https_peer_speaks_verified_tls_and_an_http_peer_plain_http(listener):
    peers = PeerSet([f"https://127.0.0.1:{listener.port}", f"http://127.0.0.1:{listener.port}"])
    try:
        https_peer, http_peer = peers.clients()
        assert https_peer.peer_list() == [] and http_peer.peer_list() == []  # both fail: the listener hangs up
    finally:
        peers.close()
    assert len(listener.seen) >= 2
    assert any(first[:1] == b"\x16" for first in listener.seen)  # a TLS ClientHello from the https peer
    assert any(first.startswith(b"GET ") for first in listener.seen)  # plain HTTP from the http peer
