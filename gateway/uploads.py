"""Streamed ANS-104 uploads (POST /tx, octet-stream): the header checked as it arrives, spools bounded.

An item's header (signature type, owner, target and anchor flags, tag counts and the tags
themselves) comes first, so a body that is not an item is refused as soon as the bytes
that show it have arrived: a bad signature type after two bytes, a tag block larger than
the limit as soon as its declared size is read, malformed tags once the header is whole.
Only a well-formed header lets the rest of the body reach the spool.

The spool (memory, then a file under data/tmp) is bounded: at most `max_uploads` bodies
at once and `max_spool_bytes` of them together, counted from Content-Length when there
is one and from the bytes received otherwise. Past either bound the client gets a 503
(retry later) or, for a body that could never fit, a 413; the connection is closed, so
the rest of a refused body is not read.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

from gateway.errors import ApiError
from permastore.protocol import ans104
from permastore.protocol.errors import MalformedData

RETRY_AFTER_S = "5"
CLOSE = {"Connection": "close"}  # a refused body is not read to its end


def upload_refused(status: int, reason: str) -> ApiError:
    """Given a status and reason, return the refusal of an upload, closing the connection after it."""
    headers = dict(CLOSE)
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER_S
    return ApiError(status, reason, headers)


class ItemHeaderCheck:
    """Given the first pieces of a body, say as early as possible whether it starts with a valid ANS-104 header."""

    def __init__(self) -> None:
        self.prefix = b""
        self.header: ans104.DataItemHeader | None = None

    @property
    def done(self) -> bool:
        return self.header is not None

    def feed(self, piece: bytes) -> None:
        """Given the next piece of the body, raise MalformedData / LimitExceeded once it shows the body is not an item."""
        if self.header is not None:
            return
        self.prefix += piece
        size = ans104.header_size_of(self.prefix)  # refuses a bad type, flag or declared tag size at once
        if size is not None and len(self.prefix) >= size:
            self.header = ans104.parse_header(self.prefix[:size])
            self.prefix = b""

    def finish(self) -> ans104.DataItemHeader:
        """Return the parsed header at the end of the body, or raise MalformedData when it never completed."""
        if self.header is None:
            raise MalformedData(f"data item ends inside its header ({len(self.prefix)} bytes)")
        return self.header


@dataclass
class UploadLimits:
    max_uploads: int
    max_spool_bytes: int


class UploadSpools:
    """Given the limits, admit streamed uploads while there is room for them; thread-safe."""

    def __init__(self, limits: UploadLimits):
        self.limits = limits
        self._lock = threading.Lock()
        self.active = 0
        self.reserved = 0

    @contextmanager
    def admitted(self, declared: int | None):
        """Given the Content-Length (None for chunked), hold a slot for one upload; yield its UploadReservation."""
        reservation = UploadReservation(self)
        with self._lock:
            if self.active >= self.limits.max_uploads:
                raise upload_refused(503, f"too many uploads in progress (at most {self.limits.max_uploads}); retry later")
            self.active += 1
        try:
            if declared:
                reservation.grow_to(declared)
            yield reservation
        finally:
            with self._lock:
                self.active -= 1
                self.reserved -= reservation.size

    def _reserve(self, more: int, own: int) -> None:
        limit = self.limits.max_spool_bytes
        with self._lock:
            if self.reserved + more > limit:
                if self.reserved == own:  # nothing else is spooling: this body alone can never fit
                    raise upload_refused(413, f"upload larger than the spool ({limit} bytes)")
                raise upload_refused(503, f"upload spool full ({limit} bytes in use by other uploads); retry later")
            self.reserved += more


class UploadReservation:
    """The spool bytes one upload holds; it grows past its Content-Length only when that lied."""

    def __init__(self, spools: UploadSpools):
        self.spools = spools
        self.size = 0

    def grow_to(self, total: int) -> None:
        """Given the bytes this upload needs in all, reserve the difference (503/413 when it does not fit)."""
        if total > self.size:
            self.spools._reserve(total - self.size, self.size)
            self.size = total
