"""The gateway's access log: one Combined-Log-Format line per request, written off the event loop.

A line is built on the event loop (a few string operations; the timestamp text is
rendered by the writer thread each tick, so it is at most FLUSH_INTERVAL_S old) and appended to a bounded deque; one writer thread joins whatever has piled up
and writes it with one `write()` about every FLUSH_INTERVAL_S. So a busy server makes a
few write syscalls a second, not one per request, and a stderr nobody reads (a full pipe)
blocks only the writer thread: past MAX_PENDING_LINES the oldest lines are dropped and
counted, never the server.

Two hooks feed it, between them every request:
  * `AccessLogMiddleware`, the outermost ASGI layer: everything the app answers;
  * `with_access_log(protocol_class, log)`: the httptools protocol's own answers to cached
    small objects (gateway/fast_protocol.py), which never reach the app.

Line format (Combined Log Format, plus the duration in microseconds as Apache's %D):
    127.0.0.1 - - [01/Dec/2026:16:09:28 +0000] "GET /info HTTP/1.1" 200 512 "-" "curl/8.5.0" 412
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

FLUSH_INTERVAL_S = 0.2
MAX_PENDING_LINES = 100_000
MAX_FIELD_CHARS = 2048  # a 64 KiB URL is logged cut, not in full
MAX_CLEANED = 4096
HIT_METHODS = {b"GET": "GET", b"HEAD": "HEAD"}
_ESCAPED = {ord('"'): '\\"', ord("\\"): "\\\\"}


def clean_field(raw: bytes | str | None) -> str:
    """Given a request field (path, header value), return it safe for one log line.

    Security: a stranger chooses these bytes; quotes, backslashes, control and non-ASCII
    bytes are escaped (as nginx does) so no request can forge or split log lines.
    """
    if not raw:
        return "-"
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    if len(text) > MAX_FIELD_CHARS:
        text = text[:MAX_FIELD_CHARS] + "..."
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(
        _ESCAPED.get(ord(ch), ch) if " " <= ch <= "~" else f"\\x{ord(ch) & 0xFF:02X}" if ord(ch) < 256 else "?"
        for ch in text
    )


class AccessLog:
    """Given a file descriptor, write request lines to it from one background thread, batched."""

    def __init__(self, fd: int = 2):
        self.fd = fd
        self.dropped = 0  # lines not kept because MAX_PENDING_LINES were waiting (incremented on the loop)
        self._lines: deque[str] = deque()
        # Cleaned text of raw fields seen lately (agents, methods, paths): most requests repeat them.
        self._cleaned: dict = {}
        self._stop = threading.Event()
        self._clock_text = ""
        self._tick_clock()
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()

    def _tick_clock(self) -> None:
        """Render now as `[10/Oct/2000:13:55:36 +0000]` for the lines to come (the writer does, each tick)."""
        self._clock_text = time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime())

    def _clean_new(self, raw) -> str:
        cleaned = self._cleaned
        if len(cleaned) >= MAX_CLEANED:
            cleaned.clear()
        text = cleaned[raw] = clean_field(raw)
        return text

    def record(self, client, method, target, version, status: int, size: int, referer, agent, seconds: float) -> None:
        """Given one answered request, queue its line (called on the event loop; never blocks)."""
        seen = self._cleaned.get
        new = self._clean_new
        line = (f'{client[0] if client else "-"} - - {self._clock_text} '
                f'"{seen(method) or new(method)} {seen(target) or new(target)} HTTP/{version}" {status} {size} '
                f'"{seen(referer) or new(referer)}" "{seen(agent) or new(agent)}" {int(seconds * 1_000_000)}\n')
        lines = self._lines
        if len(lines) < MAX_PENDING_LINES:
            lines.append(line)
        else:
            self.dropped += 1

    def record_hit(self, client, method: bytes, path: bytes, version: str, size: int, headers, seconds: float) -> None:
        """Given a cache hit the protocol answered itself, queue its line: `record`, with less work.

        Only a `GET|HEAD /{43-character ID}` is ever answered there (gateway/fastpath.py
        checks the path against the ID pattern), so method and path need no escaping.
        """
        agent = referer = None
        for name, value in headers:
            if name == b"user-agent":
                agent = value
            elif name == b"referer":
                referer = value
        seen = self._cleaned.get
        lines = self._lines
        if len(lines) < MAX_PENDING_LINES:
            lines.append(f'{client[0] if client else "-"} - - {self._clock_text} "{HIT_METHODS.get(method, "GET")} '
                         f'{path.decode("ascii", "replace")} HTTP/{version}" 200 {size} '
                         f'"{seen(referer) or self._clean_new(referer)}" "{seen(agent) or self._clean_new(agent)}" '
                         f'{int(seconds * 1_000_000)}\n')
        else:
            self.dropped += 1

    def _drain(self) -> str:
        lines = self._lines
        out = []
        while lines:
            out.append(lines.popleft())
        return "".join(out)

    def _write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            try:
                written = os.write(self.fd, data)
            except InterruptedError:
                continue
            except OSError:
                return  # stderr closed: the log is lost, the server goes on
            data = data[written:]

    def _run(self) -> None:
        reported = 0
        while not self._stop.wait(FLUSH_INTERVAL_S):
            self._tick_clock()
            reported = self._flush_once(reported)
        self._flush_once(reported)

    def _flush_once(self, reported: int) -> int:
        """Write what is queued and a line for lines dropped since `reported`; return the drops reported."""
        text = self._drain()
        dropped = self.dropped
        if dropped > reported:
            text += f"permastore: {dropped - reported} access log line(s) dropped (stderr not read fast enough)\n"
        if text:
            self._write(text)
        return dropped

    def close(self) -> None:
        """Write every queued line and stop the writer thread."""
        self._stop.set()
        self._thread.join(timeout=5)


def _header_pair(headers) -> tuple[bytes | None, bytes | None]:
    """Given lowercased raw headers, return (Referer, User-Agent)."""
    referer = agent = None
    for name, value in headers:
        if name == b"user-agent":
            agent = value
        elif name == b"referer":
            referer = value
    return referer, agent


class AccessLogMiddleware:
    """ASGI middleware: after each HTTP request the app answered, one line in the access log.

    The line is recorded when the app returns (a streamed body finished or the client
    left), with the status sent and the body bytes sent (0 and status 0 if none were).
    """

    def __init__(self, app, log: AccessLog):
        self.app = app
        self.log = log

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = [0, 0]  # status, body bytes

        async def counting_send(message) -> None:
            if message["type"] == "http.response.body":
                sent[1] += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                sent[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            target = scope.get("raw_path") or scope["path"].encode()
            if scope.get("query_string"):
                target = target + b"?" + scope["query_string"]
            referer, agent = _header_pair(scope["headers"])
            self.log.record(scope.get("client"), scope["method"], target, scope.get("http_version", "1.1"),
                            sent[0], sent[1], referer, agent, time.perf_counter() - started)


def with_access_log(protocol, log: AccessLog):
    """Given uvicorn's `http` setting and the log, return it with the protocol's own cache hits logged.

    A string setting (h11, auto) is returned as is: every request then reaches the app and
    its middleware. The protocol class answers a hit inside `_cached_answer` (the whole
    response as bytes, or None when the app must answer); that is the one place to see it.
    """
    if isinstance(protocol, str) or not hasattr(protocol, "_cached_answer"):
        return protocol

    def _cached_answer(self):
        started = time.perf_counter()
        answer = protocol._cached_answer(self)
        if answer is not None:
            parser = self.parser
            log.record_hit(self.client, parser.get_method(), self.url, parser.get_http_version(),
                           len(answer) - answer.find(b"\r\n\r\n") - 4, self.headers, time.perf_counter() - started)
        return answer

    return type(protocol.__name__, (protocol,), {"_cached_answer": _cached_answer})


def install_access_log(config, log: AccessLog | None) -> None:
    """Given a uvicorn Config not yet loaded and the log (None: --quiet), route every request through the log."""
    if log is not None:
        config.app = AccessLogMiddleware(config.app, log)
        config.http = with_access_log(config.http, log)
