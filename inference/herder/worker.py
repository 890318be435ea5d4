"""A worker process and the parent's handle on it.

The worker runs jobs sent over its pipe: `job(payload, context)`, where `job` is a
module-level callable (pickled by name) and `context` is the worker's JobContext:
`emit(event)` streams output back (in batches: one pipe message per ~10 ms of output,
the first event at once), `late_value()` waits for a value the parent sends while the
job runs, `resource(name, factory)` keeps objects (loaded engines) between jobs.

Messages, parent to worker: (job_id, pickle of (job, payload)), (LATE, job_id, value,
error), None (exit). Worker to parent: ("ready", pid), ("events", job_id, [event, ...]),
("done", job_id, result), ("failed", job_id, reason).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar, runtime_checkable

from inference.errors import HerderClosed, HerderError, WorkerLost

log = logging.getLogger("inference.herder")

LATE = "late"
EMIT_INTERVAL_S = 0.01  # events emitted within this long of the last send travel together
KILL_WAIT_S = 5.0
T = TypeVar("T")


class JobContext(Protocol):
    """What a job gets besides its payload (see the module docstring)."""

    def emit(self, event: Any) -> None: ...

    def late_value(self) -> Any: ...

    def resource(self, name: str, factory: Callable[[], T]) -> T: ...


@runtime_checkable
class Closeable(Protocol):
    """A kept resource that holds native memory (an engine cache) and must be freed before exit."""

    def close(self) -> None: ...


class WorkerContext:
    """The JobContext of one worker process: its pipe, the running job's ID, its kept resources."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.job_id = 0
        self._events: list[Any] = []
        self._last_send = 0.0
        self._resources: dict[str, Any] = {}

    def begin(self, job_id: int) -> None:
        self.job_id = job_id
        self._events = []
        self._last_send = 0.0

    def emit(self, event: Any) -> None:
        self._events.append(event)
        now = time.monotonic()
        if now - self._last_send >= EMIT_INTERVAL_S:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        """Send the events not sent yet (before the job's answer, and before it waits)."""
        if self._events:
            events, self._events = self._events, []
            self.conn.send(("events", self.job_id, events))
        self._last_send = time.monotonic() if now is None else now

    def late_value(self) -> Any:
        """Wait for the running job's late value (see WorkerPool.submit); raise if it failed."""
        self.flush()
        while True:
            message = self.conn.recv()
            if message is None:
                raise HerderClosed("the herder closed while the job waited for its late value")
            if message[0] == LATE and message[1] == self.job_id:
                if message[3] is not None:
                    raise HerderError(f"the call's late value failed: {message[3]}")
                return message[2]

    def resource(self, name: str, factory: Callable[[], T]) -> T:
        if name not in self._resources:
            self._resources[name] = factory()
        return self._resources[name]

    def close(self) -> None:
        """Close every kept resource that can be closed (llama.cpp frees badly at interpreter exit)."""
        for value in self._resources.values():
            if isinstance(value, Closeable):
                value.close()
        self._resources.clear()


def worker_main(conn: Connection) -> None:
    """Run in a worker process: execute jobs from the pipe until it closes."""
    # The server handles Ctrl-C; a worker only stops when the herder says so or kills it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    context = WorkerContext(conn)
    conn.send(("ready", os.getpid()))
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                return
            if message is None:
                return
            if message[0] == LATE:
                continue  # meant for a job that has ended (it did not need the value)
            _run_job(context, *message)
    finally:
        context.close()


def _run_job(context: WorkerContext, job_id: int, pickled: bytes) -> None:
    context.begin(job_id)
    try:
        job, payload = pickle.loads(pickled)
        result = job(payload, context)
    except Exception as exc:  # noqa: BLE001 - the job's failure is reported, the worker lives on
        context.flush()
        context.conn.send(("failed", job_id, f"{type(exc).__name__}: {exc}"))
    else:
        context.flush()
        context.conn.send(("done", job_id, result))


class WorkerProcess:
    """The parent's handle on one worker process.

    Its pipe is read only by the slot thread that runs calls on it; any thread may stop
    or kill the process, but the pipe is closed once, under a lock, so a thread still
    polling it never sees its descriptor closed under it (or reused by another file).
    """

    def __init__(self, context: multiprocessing.context.SpawnContext, start_timeout: float):
        parent_end, child_end = context.Pipe(duplex=True)
        self.conn = parent_end
        self._lock = threading.Lock()
        self._closed = False
        self.process = context.Process(target=worker_main, args=(child_end,), daemon=True)
        self.process.start()
        child_end.close()
        try:
            ready = parent_end.poll(start_timeout)
            kind = parent_end.recv()[0] if ready else None
        except (EOFError, OSError):
            kind = "exited"
        if kind != "ready":
            self.kill()
            reason = {None: f"did not start within {start_timeout:.0f} s", "exited": "exited while starting"}
            raise WorkerLost(f"worker {reason.get(kind, 'sent no ready signal')}")

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def send_job(self, job_id: int, job: Callable[..., Any], payload: Any) -> None:
        """Send a job (pickled here, so a job that cannot be pickled fails its call, not the worker)."""
        self.conn.send((job_id, pickle.dumps((job, payload))))

    def send_late(self, job_id: int, value: Any, error: str | None) -> None:
        """Send a running job its late value (from any thread); a gone worker is ignored."""
        with self._lock:
            if self._closed:
                return
            try:
                self.conn.send((LATE, job_id, value, error))
            except (OSError, ValueError):
                pass  # the worker is gone; a retry sends the value again to its replacement

    def signal_kill(self) -> None:
        """SIGKILL the worker (a hung llama.cpp loop ignores gentler signals); its pipe stays open."""
        try:
            self.process.kill()
        except (OSError, ValueError):
            pass

    def kill(self) -> None:
        """Kill the worker at once, reap it and close the pipe."""
        self.signal_kill()
        with self._lock:
            self.process.join(KILL_WAIT_S)
        self.close_pipe()

    def request_stop(self) -> None:
        """Ask the worker to exit after its current job (from any thread)."""
        with self._lock:
            if self._closed:
                return
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` for the worker to exit; return True when it has."""
        with self._lock:
            self.process.join(timeout)
        return not self.process.is_alive()

    def close_pipe(self) -> None:
        """Close the parent's end of the pipe, once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.conn.close()
