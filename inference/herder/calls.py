"""Calls and the queue they wait in: highest price multiplier first, first come first served among equals."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from inference.errors import HerderClosed, HerderError
from inference.fees import DEFAULT_MULTIPLIER

Outcome = tuple[str, Any]  # ("event", x), then ("done", result) or ("error", HerderError)
Listener = Callable[[str, Any], None]
FINAL = ("done", "error")


@dataclass(eq=False)
class Call:
    """One unit of work: a job (a module-level callable run in a worker) and its priority.

    The worker runs `job(payload, context)`; `context.emit(event)` streams partial output
    back. Outcomes arrive on `outcomes` as ("event", x), then ("done", result) or
    ("error", exc); a listener, when set, is told each one too, as it arrives.
    """

    job: Callable[..., Any]
    payload: Any
    multiplier: float = DEFAULT_MULTIPLIER
    late: Future | None = None  # a value the job asks for while it runs (JobContext.late_value)
    listener: Listener | None = None
    seq: int = 0
    attempts: int = 0
    events_sent: int = 0
    outcomes: queue.Queue[Outcome] = field(default_factory=queue.Queue)
    worker_pid: int | None = None
    started_at: float | None = None

    def sort_key(self) -> tuple[float, int]:
        """Return the queue order: higher multiplier first, then earlier arrival."""
        return (-self.multiplier, self.seq)

    def deliver(self, kind: str, value: Any) -> None:
        """Record one outcome (called by the pool)."""
        if kind == "event":
            self.events_sent += 1
        self.outcomes.put((kind, value))
        if self.listener is not None:
            self.listener(kind, value)

    def results(self, timeout: float | None = None) -> Iterator[Outcome]:
        """Yield outcomes until the final one ("done" or "error"), which is yielded last."""
        while True:
            kind, value = self.outcomes.get(timeout=timeout)
            yield kind, value
            if kind in FINAL:
                return

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the call finishes; return its result or raise its HerderError."""
        for kind, value in self.results(timeout):
            if kind == "done":
                return value
            if kind == "error":
                raise value
        raise HerderError("call ended without a result")


class CallQueue:
    """Calls waiting for a worker, highest multiplier first, FIFO among equals. Thread-safe."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._cond = threading.Condition()
        self._seq = itertools.count(1)
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._calls)

    def put(self, call: Call) -> None:
        """Enqueue a new call, stamping its arrival order."""
        with self._cond:
            if self._closed:
                raise HerderClosed("herder is shutting down")
            call.seq = next(self._seq)
            self._insert(call)

    def put_back(self, call: Call) -> None:
        """Re-enqueue a call for a retry; it keeps its original place among equals."""
        with self._cond:
            if self._closed:
                raise HerderClosed("herder is shutting down")
            self._insert(call)

    def _insert(self, call: Call) -> None:
        # Linear insertion keeps the list sorted; queues are short (calls, not tokens).
        key = call.sort_key()
        index = len(self._calls)
        for i, waiting in enumerate(self._calls):
            if key < waiting.sort_key():
                index = i
                break
        self._calls.insert(index, call)
        self._cond.notify()

    def get(self, timeout: float | None = None) -> Call | None:
        """Return the next call, waiting up to `timeout`; None on timeout or when closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._calls and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._closed:
                return None
            return self._calls.pop(0)

    def take_all(self) -> list[Call]:
        """Remove and return every waiting call (the queue stays open)."""
        with self._cond:
            taken, self._calls = self._calls, []
            return taken

    def drain(self) -> list[Call]:
        """Close the queue; return the calls still waiting."""
        with self._cond:
            self._closed = True
            left, self._calls = self._calls, []
            self._cond.notify_all()
            return left

    def snapshot(self) -> list[Call]:
        """Return the waiting calls in dispatch order (for inspection)."""
        with self._cond:
            return list(self._calls)
