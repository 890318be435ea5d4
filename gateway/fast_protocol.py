"""uvicorn's httptools protocol, guarded, with cached small objects answered inside the parser callback.

Guards (httptools itself has no limits): a request's URL, header count and header bytes
are bounded (414 / 431); its headers must arrive within `header_timeout_s` of its first
byte, or of the connection's start for a client that sends nothing (408, then closed:
half-open connections are not held); its body may not pause longer than `body_timeout_s`
while the app is reading it (408); and at most `max_connections` are open (503). Time is
kept by one watchdog tick a second for all connections, so a request costs no timer.

Fast path: for a cached `GET|HEAD /{id}` most of a request's cost is the ASGI machinery
around the answer: a task, a scope, two `send()` calls and uvicorn's per-header checks.
Here such a hit is written to the transport as one precomputed byte string while the
request is parsed; everything else (a miss, Range, a manifest, any other path) goes to
the app unchanged.

This leans on uvicorn's HttpToolsProtocol internals (`cycle`, `flow`, `parser`,
`on_response_complete`, `server_state`); tests/gateway/test_server.py and
tests/gateway/test_connections.py exercise it on a real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.config import ConnectionLimits
from gateway.fastpath import CORS_LINES, SmallObjectCache, cacheable_request, header_lines

STATUS_200 = b"HTTP/1.1 200 OK\r\n"
TICK_S = 1.0


class _Answered:
    """Stands in for uvicorn's request cycle once a request was answered here: complete, nothing to wake."""

    response_complete = True
    disconnected = False
    keep_alive = True

    def __init__(self) -> None:
        self.message_event = asyncio.Event()


class Watchdog:
    """One tick a second for every connection of a server: a coarse clock and the deadline checks."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handle: asyncio.TimerHandle | None = None
        self.connections: Collection[object] | None = None  # the server's open connections

    def start(self, loop: asyncio.AbstractEventLoop, connections: Collection[object]) -> None:
        if self.handle is None:
            self.connections = connections
            self.now = loop.time()
            self.handle = loop.call_later(TICK_S, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = loop.time()
        for connection in list(self.connections or ()):
            check = getattr(connection, "check_deadlines", None)
            if check is not None:
                check(self.now)
        self.handle = loop.call_later(TICK_S, self._tick, loop) if self.connections else None


class CachedObjectProtocol(HttpToolsProtocol):
    """An HttpToolsProtocol with connection guards that answers small-object cache hits itself (see `with_cache`)."""

    cache: SmallObjectCache | None = None
    limits: ConnectionLimits = ConnectionLimits()
    watchdog: Watchdog  # set by with_cache, one per server
    # The limits again as plain class attributes: the per-request checks read one attribute each.
    _max_url = _max_headers = _max_head_bytes = 0
    _defaults_source: list | None = None  # uvicorn's default header list (date, server) last rendered
    _defaults_lines = b""

    # -- connection guards -----------------------------------------------------------
    # Per connection: `_head_since` (a head is awaited or arriving since then; None between
    # requests), `_idle_since` (answered, waiting for the next request: the keep-alive timeout
    # is the watchdog's, not a timer per answer), `_read_at` (the last bytes received).

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.watchdog.start(self.loop, self.connections)
        self._head_since: float | None = self.watchdog.now  # a client that sends nothing has a deadline too
        self._idle_since: float | None = None
        self._read_at = self.watchdog.now
        self._head_raw = 0  # bytes buffered for an unfinished head (pieces after the one it began in)
        self._began_in_feed = False
        self._fed = 0  # size of the last piece fed to the parser
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, f"too many connections (at most {self.limits.max_connections}); retry later")

    def data_received(self, data: bytes) -> None:
        self._idle_since = None
        self._began_in_feed = False
        self._fed = len(data)
        self._read_at = self.watchdog.now
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self._refuse(400, "invalid HTTP request")
            return
        if self._head_since is not None and not self._began_in_feed:
            # Still inside a head: count what is buffered for it (an endless header line included).
            self._head_raw += len(data)
            if self._head_raw > self._max_head_bytes:
                self._refuse(431, f"request headers larger than {self._max_head_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_since = self.watchdog.now
        self._head_raw = 0
        self._began_in_feed = True

    def on_response_complete(self) -> None:
        # uvicorn's, with the keep-alive timer left to the watchdog (no TimerHandle per answer).
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = self.watchdog.now

    def _head_refusal(self) -> tuple[int, str] | None:
        """Given a complete head, return (status, reason) when it breaks a limit, else None."""
        if len(self.url) > self._max_url:
            return 414, f"request URL longer than {self._max_url} bytes"
        if len(self.headers) > self._max_headers:
            return 431, f"more than {self._max_headers} request headers"
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self._max_head_bytes:  # the head came in one large piece: weighed exactly
            return 431, f"request headers larger than {self._max_head_bytes} bytes"
        return None

    def check_deadlines(self, now: float) -> None:
        """Given the watchdog's clock, close a connection that is idle too long or too slow to send (408)."""
        if self.transport is None or self.transport.is_closing():
            return
        limits, cycle = self.limits, self.cycle
        if self._idle_since is not None:
            if now - self._idle_since > limits.keep_alive_s:
                self.transport.close()  # an idle keep-alive connection, as uvicorn's timer would
        elif self.flow.read_paused:  # we stopped reading (the app is busy): no delay is the client's
            self._read_at = now
            self._head_since = now if self._head_since is not None else None
        elif self._head_since is not None and now - self._head_since > limits.header_timeout_s:
            self._refuse(408, f"request headers not received within {limits.header_timeout_s:g} s")
        elif (cycle is not None and not cycle.response_complete and getattr(cycle, "more_body", False)
              and now - self._read_at > limits.body_timeout_s):
            self._refuse(408, f"request body paused longer than {limits.body_timeout_s:g} s")

    def _refuse(self, status: int, reason: str) -> None:
        """Answer status with a JSON reason (unless an answer is under way) and close the connection."""
        self._head_since = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if status != 408 or getattr(cycle, "response_started", True):
                self.transport.close()  # another answer is pending or being written: only closing is left
                return
            cycle.disconnected = True  # the app reading the body now hears that the client went away
            cycle.message_event.set()
        body = json.dumps({"error": reason, "status": status}).encode()
        head = [STATUS_LINE[status], header_lines(self.server_state.default_headers),
                b"content-type: application/json\r\ncontent-length: ", str(len(body)).encode(),
                b"\r\nconnection: close\r\n\r\n"]
        if not self.transport.is_closing():
            self.transport.write(b"".join(head) + body)
            self.transport.close()

    # -- fast path ---------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._head_since = None
        if (len(self.url) > self._max_url or len(self.headers) > self._max_headers
                or self._fed > self._max_head_bytes) and (refusal := self._head_refusal()) is not None:
            self._refuse(*refusal)
            self._answered()
            return
        answer = self._cached_answer()
        if answer is None:
            super().on_headers_complete()
            return
        self.transport.write(answer)
        self._answered()
        self.on_response_complete()  # counts the request, re-arms keep-alive, starts pipelined ones

    def _answered(self) -> None:
        """Mark the request answered here: the parser's later callbacks for this message (no body) do nothing."""
        # uvicorn types `cycle` as its RequestResponseCycle; _Answered has the fields its callbacks read.
        self.cycle = _Answered()  # type: ignore[assignment]

    def _cached_answer(self) -> bytes | None:
        """Return the whole response for a cache hit, or None when the app must answer."""
        if len(self.url) != 44 or self.cache is None:
            return None  # not `/` + 43-character ID (with no query): cheap first refusal
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # an earlier request is still being answered: answers must keep their order
        if self.flow.write_paused:
            return None  # a client not reading: the app path waits for the buffer to drain
        parser = self.parser
        if parser.get_http_version() != "1.1" or not parser.should_keep_alive() or parser.should_upgrade():
            return None  # closing and upgrading connections take uvicorn's path
        request = cacheable_request(parser.get_method(), self.url, b"", self.headers)
        if request is None:
            return None
        entry = self.cache.get(request[0])
        if entry is None:
            return None
        parts = [STATUS_200, self._default_lines(), entry.header_lines]
        if request[1]:
            parts.append(CORS_LINES)
        parts.append(b"\r\n")
        if parser.get_method() != b"HEAD":
            parts.append(entry.body)
        return b"".join(parts)

    def _default_lines(self) -> bytes:
        """Return uvicorn's default headers (date, server) as lines, rendered once per change (once a second)."""
        defaults = self.server_state.default_headers
        cls = type(self)
        if defaults is not cls._defaults_source:
            cls._defaults_lines = header_lines(defaults)
            cls._defaults_source = defaults
        return cls._defaults_lines


def with_cache(cache: SmallObjectCache, limits: ConnectionLimits | None = None) -> type[CachedObjectProtocol]:
    """Given the app's small-object cache and the connection limits, return the protocol class uvicorn should use."""
    limits = limits or ConnectionLimits()
    attributes = {"cache": cache, "limits": limits, "watchdog": Watchdog(), "_max_url": limits.max_url_bytes,
                  "_max_headers": limits.max_headers, "_max_head_bytes": limits.max_header_bytes}
    return type("CachedObjectProtocol", (CachedObjectProtocol,), attributes)
