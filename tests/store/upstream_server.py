"""A small real HTTP upstream on 127.0.0.1, backed by a real Store, with fault switches.

It answers what UpstreamSource asks of a node: GET /tx/{id}, /item/{id}/header,
/raw/{id} (with Range), POST /graphql (bundledIn). Faults: ``tamper`` flips a data
byte, ``drop_after`` cuts the first data response after that many bytes,
``ignore_range`` answers 200 with everything, ``no_item_headers`` hides item headers.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ID = r"([A-Za-z0-9_-]{43})"


class Upstream:
    """Serve ``store`` on an ephemeral port until ``close``."""

    def __init__(self, store):
        self.store = store
        self.tamper = False
        self.drop_after: int | None = None
        self.ignore_range = False
        self.no_item_headers = False
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range)
        handler = type("UpstreamHandler", (_UpstreamHandler,), {"upstream": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _UpstreamHandler(BaseHTTPRequestHandler):
    upstream: Upstream
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/octet-stream", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        up = self.upstream
        up.requests.append(("GET", self.path, self.headers.get("Range")))
        store = up.store
        if match := re.fullmatch(f"/tx/{ID}", self.path):
            info = store.info(match[1])
            if info is None or info.kind != "tx":
                return self._send(404, b'{"error":"not found"}', "application/json")
            return self._send(200, store.raw_header(info.id), "application/json")
        if match := re.fullmatch(f"/item/{ID}/header", self.path):
            info = store.info(match[1])
            if info is None or info.kind != "item" or up.no_item_headers:
                return self._send(404, b'{"error":"not found"}', "application/json")
            return self._send(200, store.raw_header(info.id))
        if match := re.fullmatch(f"/raw/{ID}", self.path):
            return self._data(match[1])
        return self._send(404, b'{"error":"no such route"}', "application/json")

    def _data(self, object_id: str):
        up = self.upstream
        info = up.store.info(object_id)
        if info is None:
            return self._send(404, b'{"error":"not found"}', "application/json")
        size = info.data_size
        start, end, status = 0, size, 200
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if wanted and not up.ignore_range:
            start = int(wanted[1])
            end = min(int(wanted[2]) + 1, size) if wanted[2] else size
            status = 206
        body = bytearray(b"".join(up.store.read(object_id, start, end)))
        if up.tamper and body:
            body[len(body) // 2] ^= 0x01
        extra = {"Content-Range": f"bytes {start}-{end - 1}/{size}"} if status == 206 else {}
        if up.drop_after is not None and len(body) > up.drop_after:
            cut, up.drop_after = up.drop_after, None
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(bytes(body[:cut]))
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)  # the peer sees the body end early
            return
        self._send(status, bytes(body), info.content_type or "application/octet-stream", extra)

    def do_POST(self):
        up = self.upstream
        up.requests.append(("POST", self.path, None))
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path != "/graphql":
            return self._send(404, b"{}", "application/json")
        object_id = (body.get("variables") or {}).get("id")
        info = up.store.info(object_id) if object_id else None
        found = None
        if info is not None:
            found = {"id": info.id, "bundledIn": {"id": info.bundled_in} if info.bundled_in else None}
        self._send(200, json.dumps({"data": {"transaction": found}}).encode(), "application/json")
