"""uvicorn's httptools protocol, with cached small objects answered inside the parser callback.

For a cached `GET|HEAD /{id}` most of a request's cost is the ASGI machinery around the
answer: a task, a scope, two `send()` calls and uvicorn's per-header checks. Here such a hit
is written to the transport as one precomputed byte string while the request is parsed;
everything else (a miss, Range, a manifest, any other path) goes to the app unchanged.

This leans on uvicorn's HttpToolsProtocol internals (`cycle`, `flow`, `on_response_complete`,
`server_state.default_headers`); tests/gateway/test_server.py exercises it on a real server.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.fastpath import CORS_LINES, SmallObjectCache, cacheable_request, header_lines

STATUS_200 = b"HTTP/1.1 200 OK\r\n"


class _Answered:
    """Stands in for uvicorn's request cycle once a request was answered here: complete, nothing to wake."""

    response_complete = True
    disconnected = False
    keep_alive = True

    def __init__(self) -> None:
        self.message_event = asyncio.Event()


class CachedObjectProtocol(HttpToolsProtocol):
    """An HttpToolsProtocol that answers small-object cache hits itself (see `with_cache`)."""

    cache: SmallObjectCache | None = None
    _defaults_source: list | None = None  # uvicorn's default header list (date, server) last rendered
    _defaults_lines = b""

    def on_headers_complete(self) -> None:
        # A keep-alive timer armed after an earlier answer here must not fire while the app works.
        self._unset_keepalive_if_required()
        answer = self._cached_answer()
        if answer is None:
            super().on_headers_complete()
            return
        self.transport.write(answer)
        self.cycle = _Answered()  # the rest of this message (there is no body) is ignored
        self.on_response_complete()  # counts the request, re-arms keep-alive, starts pipelined ones

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


def with_cache(cache: SmallObjectCache) -> type[CachedObjectProtocol]:
    """Given the app's small-object cache, return the protocol class uvicorn should use."""
    return type("CachedObjectProtocol", (CachedObjectProtocol,), {"cache": cache})
