"""The worker pool: N worker processes taking calls from one priority queue, with timeouts and retries.

Each worker is a real OS process (spawned, so it shares no state with the server) that
keeps what its jobs load (llama.cpp models); workers mapping the same model file share its
pages through the page cache. Every call has a timeout; a worker that dies or hangs is
killed and replaced and its call retried (unless output was already streamed), so the
caller always gets an answer. The pool knows nothing of records or fees.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from inference.errors import (
    CallFailed,
    CallTimeout,
    HerderClosed,
    HerderError,
    WorkerLost,
)
from inference.fees import DEFAULT_MULTIPLIER
from inference.herder.calls import Call, CallQueue
from inference.herder.worker import KILL_WAIT_S, WorkerProcess

log = logging.getLogger("inference.herder")

RESTART_BACKOFF_S = 0.5  # between failed worker starts, so a broken setup does not spin
MAX_START_FAILURES = 3  # every slot failing this often in a row: waiting calls are answered
SHUTDOWN_GRACE_S = 10.0  # running calls may finish this long after shutdown begins
POLL_S = 0.5  # how often a waiting slot checks that its worker is still alive


@dataclass(frozen=True)
class PoolConfig:
    """How many workers run calls, and how long and how often a call may be tried."""

    workers: int = 1
    call_timeout_s: float = 300.0
    retries: int = 1
    worker_start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.call_timeout_s <= 0:
            raise ValueError("call timeout must be positive")
        if self.retries < 0:
            raise ValueError("retries must be zero or positive")


@dataclass
class _Warmup:
    job: Callable[..., Any]
    payload: Any
    enabled: bool = True


class WorkerPool:
    """Given a config, run N workers taking calls from one priority queue."""

    def __init__(self, config: PoolConfig | None = None):
        self.config = config or PoolConfig()
        self.queue = CallQueue()
        self.last_multiplier = DEFAULT_MULTIPLIER
        self.restarts = 0
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, WorkerProcess | None] = {}
        self._every_worker: list[WorkerProcess] = []  # pipes closed once the slots have stopped
        self._busy: dict[int, Call] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._job_ids = itertools.count(1)
        self._stopping = threading.Event()
        self._warmups: list[_Warmup] = []  # every worker runs them once, before its first call
        self._warmed: dict[int, tuple[int | None, int]] = {}  # slot -> (worker pid, warm-ups run)
        self._start_failures: dict[int, int] = {}  # slot -> failed starts in a row

    # -- lifecycle

    def start(self) -> WorkerPool:
        """Start the worker slots (each starts its process on its own thread); again: no-op."""
        with self._lock:
            if self._started or self._stopping.is_set():
                return self
            self._started = True
        threads = []
        for slot in range(self.config.workers):
            self._workers[slot] = None
            thread = threading.Thread(target=self._slot_loop, args=(slot,), name=f"herder-slot-{slot}", daemon=True)
            thread.start()
            threads.append(thread)
        with self._lock:
            self._threads = threads
        return self

    @property
    def started(self) -> bool:
        return self._started

    def wait_ready(self, timeout: float) -> bool:
        """Block until every worker process is up and has run the warm-ups; return False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(w is not None and w.alive() and self._warmups_done(slot, w) == len(self._warmups)
                       for slot, w in self._workers.items()):
                    return True
            time.sleep(0.02)
        return False

    def _warmups_done(self, slot: int, worker: WorkerProcess) -> int:
        pid, done = self._warmed.get(slot, (None, 0))
        return done if pid == worker.pid else 0

    def close(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop the workers: waiting calls get HerderClosed, running ones `grace_s` to finish
        before their workers are killed (and their callers told)."""
        self._stopping.set()
        for call in self.queue.drain():
            call.deliver("error", HerderClosed("herder is shutting down"))
        deadline = time.monotonic() + grace_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            workers = [w for w in self._workers.values() if w is not None]
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            if not worker.join(KILL_WAIT_S):
                worker.signal_kill()  # still busy: its slot thread sees it die and answers the call
        for thread in self._threads:
            thread.join(KILL_WAIT_S)
        # Only now, with no slot thread reading them, are the pipes closed.
        with self._lock:
            every, self._every_worker = self._every_worker, []
            self._workers = {slot: None for slot in self._workers}
        for worker in every:
            worker.signal_kill()
            worker.join(KILL_WAIT_S)
            worker.close_pipe()

    # -- submitting

    def submit(self, job: Callable[..., Any], payload: Any, multiplier: float = DEFAULT_MULTIPLIER,
               late: Future | None = None, listener: Callable[[str, Any], None] | None = None) -> Call:
        """Queue a job; return its Call (iterate `results()` or `wait()` for the outcome).

        `late`: a future whose value the job reads with `context.late_value()` once it is
        set (the job starts without waiting for it). `listener(kind, value)` is told every
        outcome as it arrives, on the pool's thread.
        """
        call = Call(job=job, payload=payload, multiplier=multiplier, late=late, listener=listener)
        self.queue.put(call)
        self.start()  # a pool nobody has used yet starts with its first call
        return call

    def run(self, job: Callable[..., Any], payload: Any, multiplier: float = DEFAULT_MULTIPLIER) -> Any:
        """Submit a job and wait for its result (raises HerderError)."""
        return self.submit(job, payload, multiplier).wait()

    def warm(self, job: Callable[..., Any], payload: Any) -> None:
        """Have every worker, and every replacement, run this job once before its next call
        (e.g. load a model, so no caller waits for the load)."""
        with self._lock:
            self._warmups.append(_Warmup(job, payload))

    # -- state

    def info(self) -> dict[str, Any]:
        """Return the pool's state: workers, alive, busy, restarts, queue length, last multiplier."""
        with self._lock:
            alive = sum(1 for w in self._workers.values() if w is not None and w.alive())
            busy = len(self._busy)
        return {
            "last_multiplier": self.last_multiplier,
            "queue_length": len(self.queue),
            "workers": self.config.workers,
            "workers_alive": alive,
            "workers_busy": busy,
            "worker_restarts": self.restarts,
            "call_timeout_s": self.config.call_timeout_s,
        }

    def worker_pids(self) -> list[int]:
        """Return the pids of the live worker processes."""
        with self._lock:
            return [w.pid for w in self._workers.values() if w is not None and w.pid]

    # -- slots

    def _slot_loop(self, slot: int) -> None:
        while not self._stopping.is_set():
            worker = self._ensure_worker(slot)
            if worker is None or not self._run_warmups(slot, worker):
                continue
            call = self.queue.get(timeout=0.2)
            if call is None:
                continue
            if not self._run_warmups(slot, worker):  # one registered while this slot waited
                self._requeue(call, WorkerLost("worker died while warming up"))
                continue
            self._dispatch(slot, worker, call)

    def _run_warmups(self, slot: int, worker: WorkerProcess) -> bool:
        """Run this worker's pending warm-up jobs; return False when the worker was lost."""
        with self._lock:
            done = self._warmups_done(slot, worker)
            pending = self._warmups[done:]
        for warmup in pending:
            if warmup.enabled:
                job = Call(job=warmup.job, payload=warmup.payload)
                job.started_at = time.monotonic()
                failure = self._exchange(worker, job, next(self._job_ids))
                if failure is not None:
                    # Dropped, so a warm-up that kills workers cannot keep calls waiting forever.
                    log.error("worker warm-up %s failed, dropped: %s", getattr(warmup.job, "__name__", "?"), failure)
                    warmup.enabled = False
                    self._replace(slot, worker)
                    return False
            done += 1
            with self._lock:
                self._warmed[slot] = (worker.pid, done)
        return True

    def _replace(self, slot: int, worker: WorkerProcess) -> None:
        """Kill a dead or hung worker so the slot starts a fresh one (on the slot's own thread)."""
        worker.kill()
        with self._lock:
            if self._workers.get(slot) is worker:
                self._workers[slot] = None
            if worker in self._every_worker:
                self._every_worker.remove(worker)
        self.restarts += 1

    def _requeue(self, call: Call, failure: HerderError) -> None:
        """Put a call that never started back in the queue, or answer it when closing."""
        try:
            self.queue.put_back(call)
        except HerderClosed as exc:
            call.deliver("error", exc if self._stopping.is_set() else failure)

    def _ensure_worker(self, slot: int) -> WorkerProcess | None:
        """Return this slot's live worker, starting one when needed (None: try again)."""
        with self._lock:
            worker = self._workers.get(slot)
        if worker is not None and worker.alive():
            return worker
        if worker is not None:
            self._replace(slot, worker)
        try:
            worker = WorkerProcess(self._context, self.config.worker_start_timeout_s)
        except (WorkerLost, OSError) as exc:
            self._start_failed(slot, exc)
            return None
        with self._lock:
            if self._stopping.is_set():
                stopping = True
            else:
                stopping = False
                self._workers[slot] = worker
                self._every_worker.append(worker)
                self._start_failures[slot] = 0
        if stopping:
            worker.kill()
            return None
        return worker

    def _start_failed(self, slot: int, exc: Exception) -> None:
        log.error("worker slot %d failed to start: %s", slot, exc)
        with self._lock:
            self._workers[slot] = None
            self._start_failures[slot] = self._start_failures.get(slot, 0) + 1
            hopeless = min(self._start_failures.get(s, 0) for s in self._workers) >= MAX_START_FAILURES
        if hopeless:
            # No worker can start: answer the waiting calls instead of keeping them forever.
            for call in self.queue.take_all():
                call.deliver("error", WorkerLost(f"no worker process could be started: {exc}"))
        self._stopping.wait(RESTART_BACKOFF_S)

    def _dispatch(self, slot: int, worker: WorkerProcess, call: Call) -> None:
        """Run one call on one worker; on death or timeout replace the worker and retry."""
        call.attempts += 1
        call.worker_pid = worker.pid
        call.started_at = time.monotonic()
        self.last_multiplier = call.multiplier
        job_id = next(self._job_ids)
        with self._lock:
            self._busy[slot] = call
        try:
            failure = self._exchange(worker, call, job_id)
        finally:
            with self._lock:
                self._busy.pop(slot, None)
            call.worker_pid = None
        if failure is None:
            return
        self._replace(slot, worker)
        # A retry is only invisible when the caller has seen nothing of the first attempt.
        if call.attempts <= self.config.retries and call.events_sent == 0 and not self._stopping.is_set():
            log.warning("retrying call after: %s", failure)
            try:
                self.queue.put_back(call)
                return
            except HerderClosed as exc:
                failure = exc
        call.deliver("error", failure)

    def _exchange(self, worker: WorkerProcess, call: Call, job_id: int) -> HerderError | None:
        """Send the job and relay its outcomes; return the failure that ends it, or None."""
        try:
            worker.send_job(job_id, call.job, call.payload)
        except (OSError, ValueError):
            return WorkerLost("worker died before the call started")
        except Exception as exc:  # noqa: BLE001 - a payload that cannot be pickled is the caller's fault
            call.deliver("error", CallFailed(f"the job could not be sent: {type(exc).__name__}: {exc}"))
            return None
        if call.late is not None:
            # Sent from whichever thread sets the value; this thread only receives from now on.
            call.late.add_done_callback(lambda done: _send_late(worker, job_id, done))
        return self._relay(worker, call, job_id)

    def _relay(self, worker: WorkerProcess, call: Call, job_id: int) -> HerderError | None:
        deadline = (call.started_at or time.monotonic()) + self.config.call_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return CallTimeout(f"call timed out after {self.config.call_timeout_s:g} s")
            try:
                if not worker.conn.poll(min(remaining, POLL_S)):
                    if not worker.alive():
                        return WorkerLost("worker died during the call")
                    continue
                kind, got_id, value = worker.conn.recv()
            except (EOFError, OSError):
                return WorkerLost("worker died during the call")
            if got_id != job_id:
                continue  # a late message from a job this worker no longer runs
            if kind == "events":
                for event in value:
                    call.deliver("event", event)
            elif kind == "done":
                call.deliver("done", value)
                return None
            else:
                call.deliver("error", CallFailed(value))
                return None


def _send_late(worker: WorkerProcess, job_id: int, done: Future) -> None:
    error = done.exception()
    worker.send_late(job_id, None if error else done.result(), str(error) if error else None)
