"""A token bucket shared by every transfer of a node: the optional global bandwidth cap (``--max-rate``)."""

from __future__ import annotations

import argparse
import threading
import time


class TokenBucket:
    """Given a rate in bytes per second (None: no cap), make ``take(n)`` wait until n bytes are allowed.

    The bucket holds at most ``burst`` bytes (a quarter second of the rate by default), so a
    cap is kept over any second, not just on average.
    """

    def __init__(self, rate: float | None, burst: float | None = None):
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else (rate / 4 if rate else 0)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, count: int) -> None:
        """Given bytes received (or about to be), sleep as long as the cap requires."""
        if self.rate is None or count <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= count
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


def parse_rate(text: str) -> float:
    """Given a rate such as 1000000, 500K, 50M or 1G (bytes/s), return it."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}
    number, unit = (text[:-1], text[-1].lower()) if text and text[-1].lower() in scale else (text, "")
    try:
        rate = float(number) * scale.get(unit, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (bytes/s, e.g. 50M)") from None
    if not 0 < rate < float("inf"):
        raise argparse.ArgumentTypeError(f"rate must be positive: {text!r}")
    return rate
