"""A small HTTP proxy in front of a real node: counts the data bytes it passes, and can corrupt them.

``flip``: in every data answer (``/raw/``, ``/chunk/``, ``/{id}``) one byte is flipped, so
each chunk-aligned piece it serves has a bad first chunk; ``sent`` counts the body bytes of
data answers passed to the client (what "the peer sent").
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PASSED_HEADERS = ("content-type", "content-length", "content-range", "accept-ranges", "etag", "x-permastore-held")
FORWARDED_HEADERS = ("range", "content-type", "accept", "x-permastore-held-only")


class NodeProxy:
    """Serve on an ephemeral port, forwarding to ``target`` (a base URL), until ``close``."""

    def __init__(self, target: str, flip: bool = False):
        parts = urlsplit(target)
        self.host, self.port = parts.hostname, parts.port
        self.flip = flip
        self.sent = 0
        self.flipped = 0
        self.lock = threading.Lock()
        handler = type("ProxyHandler", (_ProxyHandler,), {"proxy": self})
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.sent = 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client hanging up mid-answer (a pull dropping this peer) is expected here


def _is_data(path: str) -> bool:
    first = path.strip("/").split("/")[0].split("?")[0]
    return first in ("raw", "chunk") or len(first) == 43


class _ProxyHandler(BaseHTTPRequestHandler):
    proxy: NodeProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._forward("GET")

    def do_POST(self):
        self._forward("POST")

    def _forward(self, method: str) -> None:
        proxy = self.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED_HEADERS}
        upstream = http.client.HTTPConnection(proxy.host, proxy.port, timeout=60)
        try:
            upstream.request(method, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() in PASSED_HEADERS:
                    self.send_header(name, value)
            self.end_headers()
            data = _is_data(self.path)
            first = True
            while True:
                piece = response.read(65536)
                if not piece:
                    break
                if data and proxy.flip and first and response.status in (200, 206):
                    piece = self._flipped(piece)
                first = False
                if data:
                    with proxy.lock:
                        proxy.sent += len(piece)
                self.wfile.write(piece)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            upstream.close()

    def _flipped(self, piece: bytes) -> bytes:
        if self.path.startswith("/chunk/"):
            # JSON: change one base64url character of the chunk field, keep the JSON valid
            at = piece.find(b'"chunk":"') + 12
            if 12 <= at < len(piece):
                swapped = b"B" if piece[at : at + 1] != b"B" else b"C"
                piece = piece[:at] + swapped + piece[at + 1 :]
        else:
            piece = bytes([piece[0] ^ 0xFF]) + piece[1:]
        with self.proxy.lock:
            self.proxy.flipped += 1
        return piece
