"""A base for the tests' small HTTP servers (heads, peers) built on http.server."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


class QuietJsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON bytes and logs nothing."""

    def answer_json(self, body: bytes = b"{}", status: int = 200) -> None:
        """Given JSON bytes, send them as the whole answer."""
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass
