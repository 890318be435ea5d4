"""Bounds on what fetching from other nodes may cost: size, time, transfer rate.

A peer or upstream is a stranger: it may promise an endless body, send one byte every
five seconds, or claim a data_size of terabytes. Every transfer is watched by a
``TransferWatch``: past its deadline, or slower than the minimum rate over a window, it is
cut off with an ``UpstreamError``, and nothing it sent is kept unless it was proven.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from permastore.sources.base import UpstreamError

DEFAULT_MAX_DATA_SIZE = 64 * 1024**3  # as the store's own limit on a claimed data_size


class TransferTooSlow(UpstreamError):
    """A transfer passed its deadline or fell under the minimum rate: that peer is of no use now."""


@dataclass(frozen=True)
class FetchLimits:
    """How much one fetch may take.

    ``deadline_s`` bounds a whole fetch, ``header_deadline_s`` each small document (a tx
    header, a GraphQL answer); ``min_rate`` (bytes/s) must be kept over every
    ``rate_window_s``; ``read_timeout_s`` bounds a single socket read.
    """

    max_data_size: int = DEFAULT_MAX_DATA_SIZE
    deadline_s: float = 3600.0
    header_deadline_s: float = 30.0
    min_rate: int = 32 * 1024
    rate_window_s: float = 10.0
    read_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0

    def check_size(self, what: str, size: int | None) -> None:
        """Given a declared size, raise UpstreamError when it is past ``max_data_size``."""
        if size is not None and size > self.max_data_size:
            raise UpstreamError(f"{what}: {size} bytes is more than this node's limit of {self.max_data_size}")


class TransferWatch:
    """Given what is transferred, a deadline (monotonic seconds) and a minimum rate, police a transfer."""

    def __init__(self, what: str, deadline: float, min_rate: int, window_s: float):
        self.what = what
        self.deadline = deadline
        self.min_rate = min_rate
        self.window_s = window_s
        self.mark = time.monotonic()
        self.since_mark = 0
        self.total = 0

    @classmethod
    def for_limits(cls, what: str, limits: FetchLimits, deadline: float | None = None) -> TransferWatch:
        """Given FetchLimits (and an absolute deadline, else a whole-fetch one from now), return a watch."""
        if deadline is None:
            deadline = time.monotonic() + limits.deadline_s
        return cls(what, deadline, limits.min_rate, limits.rate_window_s)

    def update(self, count: int) -> None:
        """Given bytes just received, raise UpstreamError when the transfer is too slow or too late."""
        now = time.monotonic()
        self.total += count
        self.since_mark += count
        if now > self.deadline:
            raise TransferTooSlow(f"{self.what}: deadline passed after {self.total} bytes")
        elapsed = now - self.mark
        if elapsed >= self.window_s:
            rate = self.since_mark / elapsed
            if rate < self.min_rate:
                raise TransferTooSlow(
                    f"{self.what}: {rate:.0f} bytes/s over {elapsed:.1f} s, under the minimum {self.min_rate}"
                )
            self.mark, self.since_mark = now, 0

    def left(self) -> float:
        """Return the seconds left before the deadline (at least a small positive amount)."""
        return max(self.deadline - time.monotonic(), 0.001)
