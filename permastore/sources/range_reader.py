"""RangeReader: raw bytes of one peer read by HTTP Range straight into the caller's buffer.

The bulk of a fetch. http.client's ``readinto`` fills a preallocated buffer from the
socket with no intermediate copies; the caller gets the byte count after each read, so
it checks and writes every chunk as soon as it is whole, polices rate and deadline, and
can stop early. One keep-alive connection per peer per worker thread.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from permastore.sources.base import UpstreamError
from permastore.sources.limits import TransferWatch
from permastore.store.errors import NotFound

READ_STEP = 256 * 1024  # bytes asked of the socket per readinto: a chunk, so each is checked as it lands
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class RangeReader:
    """Given a peer's base URL and limits, read byte spans of its objects into buffers."""

    def __init__(self, base_url: str, limits):
        parts = urlsplit(base_url)
        self.base_url = base_url
        self.https = parts.scheme == "https"
        if not parts.hostname:
            raise ValueError(f"not a peer URL: {base_url!r}")
        self.host: str = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.limits = limits
        self.raw_route = True  # False once /raw/{id} answered 404 and /{id} the data (arlocal)
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = self._local.conn = kind(self.host, self.port, timeout=self.limits.read_timeout_s)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def read_into(self, id: str, start: int, view: memoryview, deadline: float) -> Iterator[int]:
        """Given an ID, a start offset, a buffer and a deadline, fill the buffer with bytes
        [start, start + len(view)) of the object, yielding the count received after each read.

        Raises NotFound (the peer does not have it), UpstreamError (a wrong or short answer),
        TransferTooSlow (deadline, minimum rate). Stopping the iteration early drops the connection.
        """
        size = len(view)
        response = self._open(id, start, start + size)
        done = False
        try:
            skip = self._check(response, start, start + size)
            watch = TransferWatch(f"{self.base_url}/raw/{id}", deadline, self.limits.min_rate, self.limits.rate_window_s)
            self._skip(response, skip, watch)
            # One socket read at a time (readinto1): a peer dripping bytes is seen by the watch, not
            # waited on until a whole buffer is full.
            read = response.readinto if response.chunked else response.fp.readinto1
            got = 0
            while got < size:
                count = read(view[got : got + min(READ_STEP, size - got)])
                if not count:
                    raise UpstreamError(f"{self.base_url}/raw/{id}: answer ended after {got} of {size} bytes")
                got += count
                watch.update(count)
                yield got
            if not response.chunked and response.length is not None:
                response.length -= got + skip
                done = response.length == 0
                response.close()  # the body is read: the connection is reused for the next request
        except (OSError, http.client.HTTPException) as exc:
            raise UpstreamError(f"{self.base_url}/raw/{id}: transfer broke: {exc}") from None
        finally:
            if not done:
                self._drop_connection()  # what is left of the answer is not read: the connection cannot be reused

    def _open(self, id: str, start: int, end: int) -> http.client.HTTPResponse:
        paths = (f"/raw/{id}", f"/{id}") if self.raw_route else (f"/{id}",)
        for path in paths:
            response = self._request(self.prefix + path, start, end)
            if response.status not in (400, 404) or not path.startswith("/raw/"):
                return response
            response.read()  # small error body: the connection stays usable
            self.raw_route = False
        return response

    def _request(self, path: str, start: int, end: int) -> http.client.HTTPResponse:
        for attempt in (0, 1):  # a kept-alive connection the peer closed meanwhile: once more on a new one
            conn = self._connection()
            try:
                conn.putrequest("GET", path, skip_accept_encoding=True)
                conn.putheader("Range", f"bytes={start}-{end - 1}")
                conn.putheader("Accept-Encoding", "identity")
                conn.putheader("X-Permastore-Held-Only", "1")  # a peer still fetching it: held bytes now, or 404
                conn.endheaders()
                return conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop_connection()
                if attempt:
                    raise UpstreamError(f"{self.base_url}{path}: {exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                raise UpstreamError(f"{self.base_url}{path}: {exc}") from None
        raise AssertionError("unreachable")

    def _check(self, response: http.client.HTTPResponse, start: int, end: int) -> int:
        """Check the answer is the span (206) or a whole object holding it (200); return the bytes to skip."""
        status = response.status
        if status in (404, 410):
            raise NotFound(f"{start}-{end}", f"{self.base_url}: bytes")
        if status == 206:
            match = _CONTENT_RANGE.match(response.getheader("content-range") or "")
            if match and (int(match.group(1)), int(match.group(2)) + 1) == (start, end):
                return 0
            raise UpstreamError(f"{self.base_url}: answered {response.getheader('content-range')!r} for {start}-{end - 1}")
        length = response.getheader("content-length") or ""
        if status == 200 and length.isdigit() and int(length) >= end:
            return start  # Range ignored (a whole answer): read past what comes before the span
        raise UpstreamError(f"{self.base_url}: HTTP {status} for bytes {start}-{end - 1}")

    def _skip(self, response, count: int, watch: TransferWatch) -> None:
        while count:
            piece = response.read(min(count, READ_STEP))
            if not piece:
                raise UpstreamError(f"{self.base_url}: answer ended before the span")
            count -= len(piece)
            watch.update(len(piece))

    def close(self) -> None:
        self._drop_connection()
