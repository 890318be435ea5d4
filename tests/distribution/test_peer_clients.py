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


def test_an_https_peer_speaks_tls_and_an_http_peer_plain_http(listener):
    peers = PeerSet([f"https://127.0.0.1:{listener.port}", f"http://127.0.0.1:{listener.port}"])
    try:
        https_peer, http_peer = peers.clients()
        assert https_peer.peer_list() == [] and http_peer.peer_list() == []  # both fail: the listener hangs up
    finally:
        peers.close()
    assert len(listener.seen) >= 2
    assert any(first[:1] == b"\x16" for first in listener.seen)  # a TLS ClientHello from the https peer
    assert any(first.startswith(b"GET ") for first in listener.seen)  # plain HTTP from the http peer


def self_signed(folder) -> tuple[str, str]:
    """Given a folder, write a throwaway self-signed certificate for 127.0.0.1 and its key; return their paths."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return str(cert_path), str(key_path)


def test_an_https_peer_refuses_a_certificate_it_cannot_verify(tmp_path):
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path))
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    outcomes: list[str] = []

    def serve():
        with server:
            conn, _ = server.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
                    outcomes.append("handshake completed")
            except (ssl.SSLError, OSError) as exc:
                outcomes.append(str(exc))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    peers = PeerSet([f"https://127.0.0.1:{port}"])
    try:
        assert peers.clients()[0].peer_list() == []
    finally:
        peers.close()
    thread.join(10)
    # The client checked the certificate and hung up: the server saw its "unknown CA" alert.
    assert outcomes and "unknown ca" in outcomes[0].lower(), outcomes
