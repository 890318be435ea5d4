"""A hostile upstream on 127.0.0.1: serves signed headers, then drips, floods or lies about data.

``objects[id]`` may hold ``tx`` (the /tx/{id} JSON), ``status`` (/tx/{id}/status JSON), ``header`` (/item/{id}/header bytes),
``data`` (bytes for /raw/{id} and /{id}), and a ``mode`` for the data answer:
- ``drip``: the declared body, one byte every ``drip_s`` seconds;
- ``drip_header``: the /tx/{id} JSON itself is dripped;
- ``endless``: a chunked body that never ends (no declared length);
- ``claim``: a Content-Length of ``claim`` bytes, then ``data`` and a hang-up.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HostileUpstream:
    """Serve ``objects`` on an ephemeral port until ``close``; count what each data answer sent."""

    def __init__(self, drip_s: float = 5.0):
        self.objects: dict[str, dict] = {}
        self.drip_s = drip_s
        self.sent = 0
        self.stop = threading.Event()
        handler = type("HostileHandler", (_HostileHandler,), {"upstream": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


class _HostileHandler(BaseHTTPRequestHandler):
    upstream: HostileUpstream
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for index in range(len(body)):
            if self.upstream.stop.wait(self.upstream.drip_s if index else 0):
                return
            self.wfile.write(body[index : index + 1])
            self.wfile.flush()
            self.upstream.sent += 1

    def do_GET(self):
        try:
            self._answer()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _answer(self):
        parts = self.path.strip("/").split("/")
        key = parts[1] if parts[0] in ("tx", "item", "raw") and len(parts) > 1 else parts[0]
        entry = self.upstream.objects.get(key)
        if entry is None:
            return self._send(404, b'{"error":"not found"}')
        mode = entry.get("mode")
        if parts[0] == "tx" and len(parts) == 2:
            if "tx" not in entry:
                return self._send(404, b"{}")
            body = json.dumps(entry["tx"]).encode()
            return self._drip(body, "application/json") if mode == "drip_header" else self._send(200, body)
        if parts[0] == "tx" and parts[2:] == ["status"] and "status" in entry:
            return self._send(200, json.dumps(entry["status"]).encode())
        if parts[0] == "tx":
            return self._send(404, b"{}")  # no offsets or fields here
        if parts[0] == "item":
            if "header" not in entry:
                return self._send(404, b"{}")
            return self._send(200, entry["header"], "application/octet-stream")
        if "data" not in entry:
            return self._send(404, b'{"error":"no data here"}')
        data = entry["data"]
        if mode == "drip":
            return self._drip(data, "application/octet-stream")
        if mode == "endless":
            return self._endless()
        if mode == "claim":
            self.send_response(200)
            self.send_header("Content-Length", str(entry["claim"]))
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True
            return
        self._send(200, data, "application/octet-stream")

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        piece = b"\x00" * 65536
        frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        deadline = time.monotonic() + 120
        while not self.upstream.stop.is_set() and time.monotonic() < deadline:
            self.wfile.write(frame)
            self.upstream.sent += len(piece)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        self._send(200, b'{"data":{"transaction":null}}')
