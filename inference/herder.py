"""The herder: one priority queue of calls, N worker processes, prices, timeouts, retries.

Calls wait in a `CallQueue` ordered by price multiplier (highest first) and arrival
(first come, first served among equals). Each worker is a real OS process (spawned, so
it shares no state with the server) that keeps its llama.cpp models loaded; workers
mapping the same model file share its pages through the page cache.

The gaps of AO's Llama Herder are closed here: every call has a timeout; a worker that
dies or hangs is killed and replaced and its call is retried once (or, failing again,
refunded); the caller always gets an answer.
"""

from __future__ import annotations

import importlib
import itertools
import json
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Iterator

from inference.errors import InferenceError
from inference.fees import DEFAULT_MULTIPLIER, FEE_BUMP, FeeSchedule, quote

log = logging.getLogger("inference.herder")

CONFIG_FILE = "herder.json"  # under the data folder
ENV_PREFIX = "PERMASTORE_"
DEFAULT_WORKERS = 1
DEFAULT_CALL_TIMEOUT_S = 300.0
DEFAULT_RETRIES = 1
WORKER_START_TIMEOUT_S = 120.0
RESTART_BACKOFF_S = 0.5  # between failed worker starts, so a broken setup does not spin
MAX_START_FAILURES = 3  # every slot failing this often in a row: waiting calls are answered
KILL_WAIT_S = 5.0
SHUTDOWN_GRACE_S = 10.0  # running calls may finish this long after shutdown begins


# ---------------------------------------------------------------------------- config


@dataclass
class HerderConfig:
    """Given the node's settings, describe how calls are priced, queued and run."""

    workers: int = DEFAULT_WORKERS
    fee_base: int = 0  # both fees 0: pricing off, the embedded default of a local node
    fee_token: int = 0
    require_keys: bool = False  # False: callers on 127.0.0.1 need no key
    call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    worker_start_timeout_s: float = WORKER_START_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.call_timeout_s <= 0:
            raise ValueError("call timeout must be positive")
        if self.retries < 0:
            raise ValueError("retries must be zero or positive")
        FeeSchedule(self.fee_base, self.fee_token)  # validates the fees

    @property
    def fees(self) -> FeeSchedule:
        """Return the fee schedule."""
        return FeeSchedule(self.fee_base, self.fee_token)

    @classmethod
    def load(
        cls,
        data_dir: Path | str | None = None,
        env: dict[str, str] | None = None,
        **overrides: Any,
    ) -> "HerderConfig":
        """Return the config from, lowest to highest precedence: defaults, `data/herder.json`,
        PERMASTORE_* environment variables, then explicit overrides (CLI flags; None skipped).
        """
        values: dict[str, Any] = {}
        if data_dir is not None:
            path = Path(data_dir) / CONFIG_FILE
            if path.exists():
                try:
                    loaded = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError) as exc:
                    raise ValueError(f"{path}: not valid JSON: {exc}") from exc
                if not isinstance(loaded, dict):
                    raise ValueError(f"{path}: expected a JSON object")
                values.update(loaded)
        env = os.environ if env is None else env
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown herder settings: {', '.join(unknown)}")
        return cls(**{name: _coerce(known[name].type, name, v) for name, v in values.items()})


def _coerce(type_name: Any, name: str, value: Any) -> Any:
    """Given a field's annotated type and a raw value (JSON or env string), return it typed."""
    kind = str(type_name)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind == "float":
            return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"herder setting {name}: cannot read {value!r} as {kind}") from None
    return value


# ---------------------------------------------------------------------------- errors


class HerderError(InferenceError):
    """A call the herder could not complete; `status` is the HTTP status to answer with."""

    status = 503


class CallTimeout(HerderError):
    """The call ran past its timeout on every attempt."""

    status = 504


class WorkerLost(HerderError):
    """The worker died on every attempt."""

    status = 503


class CallFailed(HerderError):
    """The job itself raised (bad input found late): not retried, the caller's fault."""

    status = 422


class HerderClosed(HerderError):
    """The herder is shutting down."""

    status = 503


# ---------------------------------------------------------------------------- calls and queue


@dataclass
class Call:
    """One unit of work: a job (`module:function` run in a worker) and its priority.

    The worker runs `function(payload, emit)`; `emit(event)` streams partial output back.
    Outcomes arrive on `outcomes` as ("event", x), then ("done", result) or ("error", exc).
    """

    target: str
    payload: Any
    multiplier: float = DEFAULT_MULTIPLIER
    seq: int = 0
    attempts: int = 0
    events_sent: int = 0
    outcomes: "queue.Queue[tuple[str, Any]]" = field(default_factory=queue.Queue)
    worker_pid: int | None = None
    started_at: float | None = None
    late: Future | None = None  # a value the job asks for while it runs (late_value)

    def sort_key(self) -> tuple[float, int]:
        """Return the queue order: higher multiplier first, then earlier arrival."""
        return (-self.multiplier, self.seq)

    def results(self, timeout: float | None = None) -> Iterator[tuple[str, Any]]:
        """Yield outcomes until the final one ("done" or "error"), which is yielded last."""
        while True:
            kind, value = self.outcomes.get(timeout=timeout)
            yield kind, value
            if kind in ("done", "error"):
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


# ---------------------------------------------------------------------------- worker process


def _resolve(target: str) -> Callable[..., Any]:
    """Given "module:function", return the function."""
    module_name, _, function_name = target.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


LATE = "late"  # tag of a late value sent to a running job: (LATE, job_id, value, error)
_worker_job: dict[str, Any] = {}  # in a worker: the running job's pipe and ID


def _send_late(worker: "WorkerProcess", job_id: int, done: Future) -> None:
    error = done.exception()
    message = (LATE, job_id, None if error else done.result(), str(error) if error else None)
    try:
        worker.conn.send(message)
    except (OSError, ValueError):
        pass  # the worker is gone; a retry sends the value again to its replacement


def late_value() -> Any:
    """In a worker job: wait for the call's late value (see Herder.submit); raise if it failed."""
    conn, job_id = _worker_job["conn"], _worker_job["id"]
    while True:
        message = conn.recv()
        if message is None:
            raise HerderClosed("the herder closed while the job waited for its late value")
        if message[0] == LATE and message[1] == job_id:
            if message[3] is not None:
                raise HerderError(f"the call's late value failed: {message[3]}")
            return message[2]


def worker_main(conn: Connection) -> None:
    """Run in a worker process: execute jobs from the pipe until it closes."""
    # The server handles Ctrl-C; a worker only stops when the herder says so or kills it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        if message[0] == LATE:
            continue  # meant for a job that has ended (it did not need the value)
        job_id, target, payload = message
        _worker_job.update(conn=conn, id=job_id)

        def emit(event: Any, _job_id: int = job_id) -> None:
            conn.send(("event", _job_id, event))

        try:
            result = _resolve(target)(payload, emit)
        except Exception as exc:  # the job's failure is reported, the worker lives on
            conn.send(("failed", job_id, f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(("done", job_id, result))


class WorkerProcess:
    """The parent's handle on one worker process."""

    def __init__(self, context: multiprocessing.context.BaseContext, start_timeout: float):
        parent_end, child_end = context.Pipe(duplex=True)
        self.conn = parent_end
        self.process = context.Process(target=worker_main, args=(child_end,), daemon=True)
        self.process.start()
        child_end.close()
        if not parent_end.poll(start_timeout):
            self.kill()
            raise WorkerLost(f"worker did not start within {start_timeout:.0f} s")
        try:
            kind, _pid = parent_end.recv()
        except (EOFError, OSError):
            self.kill()
            raise WorkerLost("worker exited while starting") from None
        if kind != "ready":
            self.kill()
            raise WorkerLost("worker sent no ready signal")

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        """Kill the worker at once (SIGKILL: a hung llama.cpp loop ignores gentler signals)."""
        try:
            self.process.kill()
        except (OSError, ValueError):
            pass
        self.process.join(KILL_WAIT_S)
        self.conn.close()

    def stop(self) -> None:
        """Ask the worker to exit; kill it when it does not."""
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(KILL_WAIT_S)
        if self.process.is_alive():
            self.kill()
        else:
            self.conn.close()


# ---------------------------------------------------------------------------- the herder


class Herder:
    """Given a config, run N workers taking calls from one priority queue."""

    def __init__(self, config: HerderConfig | None = None):
        self.config = config or HerderConfig()
        self.queue = CallQueue()
        self.last_multiplier = DEFAULT_MULTIPLIER
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, WorkerProcess | None] = {}
        self._busy: dict[int, Call] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._job_ids = itertools.count(1)
        self._stopping = threading.Event()
        self._warmups: list[list] = []  # [target, payload, enabled]: every worker runs them once
        self._warmed: dict[int, tuple[int | None, int]] = {}  # slot -> (worker pid, warmups run)
        self._start_failures: dict[int, int] = {}  # slot -> failed starts in a row
        self.restarts = 0

    # -- lifecycle

    def start(self) -> "Herder":
        """Start the worker slots (each starts its process on its own thread)."""
        for slot in range(self.config.workers):
            self._workers[slot] = None
            thread = threading.Thread(
                target=self._slot_loop, args=(slot,), name=f"herder-slot-{slot}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def wait_ready(self, timeout: float) -> bool:
        """Block until every worker process is up; return False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(w is not None and w.alive() for w in self._workers.values()):
                    return True
            time.sleep(0.02)
        return False

    def close(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop the workers: waiting calls get HerderClosed, running ones `grace_s` to finish
        before their workers are killed (and their callers told)."""
        self._stopping.set()
        for call in self.queue.drain():
            call.outcomes.put(("error", HerderClosed("herder is shutting down")))
        deadline = time.monotonic() + grace_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            workers = [w for w in self._workers.values() if w is not None]
        for worker in workers:
            worker.stop()  # a worker still busy is killed; its slot answers the call
        for thread in self._threads:
            thread.join(KILL_WAIT_S)
        with self._lock:
            self._workers = {slot: None for slot in self._workers}

    # -- submitting

    def submit(self, target: str, payload: Any, multiplier: float = DEFAULT_MULTIPLIER,
               late: Future | None = None) -> Call:
        """Queue a job; return its Call (iterate `results()` or `wait()` for the outcome).

        `late`: a future whose value the job reads with `late_value()` once it is set
        (the job starts without waiting for it).
        """
        call = Call(target=target, payload=payload, multiplier=multiplier, late=late)
        self.queue.put(call)
        return call

    def run(self, target: str, payload: Any, multiplier: float = DEFAULT_MULTIPLIER) -> Any:
        """Submit a job and wait for its result (raises HerderError)."""
        return self.submit(target, payload, multiplier).wait()

    # -- state

    def quote(self, needed: int) -> int:
        """Given a call's needed fee, return the payment to offer now."""
        return quote(needed, self.last_multiplier, len(self.queue))

    def info(self) -> dict[str, Any]:
        """Return the public state: fees, last multiplier, queue length, workers."""
        with self._lock:
            alive = sum(1 for w in self._workers.values() if w is not None and w.alive())
            busy = len(self._busy)
        return {
            "base_fee": self.config.fee_base,
            "token_fee": self.config.fee_token,
            "fee_bump": FEE_BUMP,
            "last_multiplier": self.last_multiplier,
            "queue_length": len(self.queue),
            "workers": self.config.workers,
            "workers_alive": alive,
            "workers_busy": busy,
            "worker_restarts": self.restarts,
            "pricing": self.config.fees.enabled,
            "call_timeout_s": self.config.call_timeout_s,
        }

    def worker_pids(self) -> list[int]:
        """Return the pids of the live worker processes."""
        with self._lock:
            return [w.pid for w in self._workers.values() if w is not None and w.pid]

    def busy_pid_of(self, call: Call) -> int | None:
        """Return the pid of the worker running `call`, or None when it is not running."""
        return call.worker_pid

    # -- slots

    def warm(self, target: str, payload: Any) -> None:
        """Have every worker, and every replacement, run this job once before its next call
        (e.g. load a model, so no caller waits for the load)."""
        with self._lock:
            self._warmups.append([target, payload, True])

    def _run_warmups(self, slot: int, worker: WorkerProcess) -> bool:
        """Run this worker's pending warm-up jobs; return False when the worker was lost."""
        with self._lock:
            pid, done = self._warmed.get(slot, (None, 0))
            if pid != worker.pid:
                done = 0
            pending = self._warmups[done:]
        for warmup in pending:
            target, payload, enabled = warmup
            if enabled:
                job = Call(target=target, payload=payload)
                job.started_at = time.monotonic()
                failure = self._exchange(worker, job, next(self._job_ids))
                if failure is not None:
                    # Dropped, so a warm-up that kills workers cannot keep calls waiting forever.
                    log.error("worker warm-up %s failed, dropped: %s", target, failure)
                    warmup[2] = False
                    self._replace(slot, worker)
                    return False
            done += 1
            with self._lock:
                self._warmed[slot] = (worker.pid, done)
        return True

    def _replace(self, slot: int, worker: WorkerProcess) -> None:
        """Kill a dead or hung worker so the slot starts a fresh one."""
        worker.kill()
        with self._lock:
            if self._workers.get(slot) is worker:
                self._workers[slot] = None
        self.restarts += 1

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

    def _requeue(self, call: Call, failure: HerderError) -> None:
        """Put a call that never started back in the queue, or answer it when closing."""
        try:
            self.queue.put_back(call)
        except HerderClosed as exc:
            call.outcomes.put(("error", exc if self._stopping.is_set() else failure))

    def _ensure_worker(self, slot: int) -> WorkerProcess | None:
        """Return this slot's live worker, starting one when needed (None: try again)."""
        with self._lock:
            worker = self._workers.get(slot)
        if worker is not None and worker.alive():
            return worker
        if worker is not None:
            worker.kill()
            self.restarts += 1
        try:
            worker = WorkerProcess(self._context, self.config.worker_start_timeout_s)
        except (WorkerLost, OSError) as exc:
            log.error("worker slot %d failed to start: %s", slot, exc)
            with self._lock:
                self._workers[slot] = None
                self._start_failures[slot] = self._start_failures.get(slot, 0) + 1
                hopeless = min(self._start_failures.get(s, 0) for s in self._workers) >= MAX_START_FAILURES
            if hopeless:
                # No worker can start: answer the waiting calls instead of keeping them forever.
                for call in self.queue.take_all():
                    call.outcomes.put(("error", WorkerLost(f"no worker process could be started: {exc}")))
            self._stopping.wait(RESTART_BACKOFF_S)
            return None
        with self._lock:
            self._workers[slot] = worker
            self._start_failures[slot] = 0
        return worker

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
        call.outcomes.put(("error", failure))

    def _exchange(self, worker: WorkerProcess, call: Call, job_id: int) -> HerderError | None:
        """Send the job and relay its outcomes; return the failure that ends it, or None."""
        try:
            worker.conn.send((job_id, call.target, call.payload))
        except (OSError, ValueError, BrokenPipeError):
            return WorkerLost("worker died before the call started")
        if call.late is not None:
            # Sent from whichever thread sets the value; this thread only receives from now on.
            call.late.add_done_callback(lambda done: _send_late(worker, job_id, done))
        deadline = call.started_at + self.config.call_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return CallTimeout(f"call timed out after {self.config.call_timeout_s:g} s")
            try:
                if not worker.conn.poll(min(remaining, 0.5)):
                    if not worker.alive():
                        return WorkerLost("worker died during the call")
                    continue
                kind, got_id, value = worker.conn.recv()
            except (EOFError, OSError):
                return WorkerLost("worker died during the call")
            if got_id != job_id:
                continue  # a late message from a job this worker no longer runs
            if kind == "event":
                call.events_sent += 1
                call.outcomes.put(("event", value))
            elif kind == "done":
                call.outcomes.put(("done", value))
                return None
            else:
                call.outcomes.put(("error", CallFailed(value)))
                return None


# ---------------------------------------------------------------------------- paid calls

EXECUTE_JOB = "inference.processes:execute_job"  # runs a PreparedCall in a worker
LOAD_ENGINE_JOB = "inference.herder:load_engine_job"


def load_engine_job(payload: dict, emit: Callable[[Any], None]) -> None:
    """Run in a worker: load (and keep) the engine for a model file and settings."""
    from inference.engine import EngineSettings
    from inference.processes import engine_for

    engine_for(payload["model_path"], EngineSettings.from_json(payload["settings"]))


class PaymentRequired(HerderError):
    """The caller offered or holds too little credit; nothing was charged or written."""

    status = 402

    def __init__(self, message: str, needed: int, balance: int | None = None, quote: int | None = None):
        super().__init__(message)
        self.needed = needed
        self.balance = balance
        self.quote = quote


class InvalidPayment(HerderError):
    """A payment or fee the ledger cannot hold (beyond its integer range)."""

    status = 400


class RunningCall:
    """A call accepted by the service: its Message is written, its fee reserved, its job queued.

    A follower thread settles it whatever the HTTP side does (a client that leaves early
    still gets its Result written and its fee charged or refunded): `text_pieces()`
    streams the output, `finish()` waits for the settled outcome.
    """

    _END = object()

    def __init__(self, service: "HerderService", prepared: Any, job: Call, reservation: Any, fee: int,
                 message: Any = None):
        self.service = service
        self.prepared = prepared
        self.message = message  # processes.MessageWrite: the Message being stored meanwhile
        self.job = job
        self.reservation = reservation
        self.fee = fee
        self._pieces: "queue.Queue[Any]" = queue.Queue()
        self._settled = threading.Event()
        self._outcome: Any = None
        threading.Thread(target=self._follow, name="herder-call", daemon=True).start()

    @property
    def message_id(self) -> str:
        return self.prepared.message_id

    def text_pieces(self) -> Iterator[str]:
        """Yield output text as the worker produces it, until the call is settled (once)."""
        while True:
            piece = self._pieces.get()
            if piece is self._END:
                return
            yield piece

    def finish(self) -> Any:
        """Wait until the call is settled; return the CallResult or raise its HerderError."""
        self._settled.wait()
        if isinstance(self._outcome, HerderError):
            raise self._outcome
        return self._outcome

    def _follow(self) -> None:
        final: tuple[str, Any] = ("error", HerderError("call ended without a result"))
        try:
            for kind, value in self.job.results():
                if kind == "event":
                    self._pieces.put(value)
                else:
                    final = (kind, value)
            self._outcome = self._settle(*final)
        except Exception as exc:  # settling must never leave a caller waiting
            log.exception("settling call %s failed", self.message_id)
            self._outcome = HerderError(f"call could not be settled: {exc}")
        finally:
            self._settled.set()
            self._pieces.put(self._END)

    def _settle(self, kind: str, value: Any) -> Any:
        from inference.processes import write_failure, write_result

        service = self.service
        if kind == "done":
            try:
                result = write_result(service.store, self.prepared, value, self.message)
            except Exception as exc:
                # The output could not be recorded: the caller gets no unrecorded answer, and
                # pays nothing for it.
                log.error("writing result of %s failed: %s", self.message_id, exc)
                service.refund(self.reservation)
                return HerderError(f"the result could not be recorded: {exc}")
            service.charge(self.reservation)
            return result
        error = value if isinstance(value, HerderError) else HerderError(str(value))
        try:
            write_failure(service.store, self.prepared, str(error), self.message)
        except Exception as exc:  # the refund below matters more than the failure record
            log.error("writing failure of %s failed: %s", self.message_id, exc)
        service.refund(self.reservation)
        return error


class HerderService:
    """The herder as the server uses it: store, worker pool, ledger and API keys together."""

    def __init__(self, store: Any, data_dir: Path | str, config: HerderConfig | None = None, source: Any = None):
        from inference.credits import Ledger
        from inference.keys import KeyStore

        self.store = store
        self.source = source
        self.config = config or HerderConfig()
        self.ledger = Ledger.open(data_dir)
        self.keys = KeyStore.open(data_dir)
        # Calls reserved by a previous run of this node never finished: give the credit back.
        refunded = self.ledger.refund_open_reservations()
        if refunded:
            log.warning("refunded %d calls left open by the previous run", refunded)
        self.herder = Herder(self.config).start()
        self._default_processes: dict[str, str] = {}
        self._spawn_lock = threading.Lock()

    def close(self) -> None:
        """Stop the workers and close the ledger and key store."""
        self.herder.close()
        self.ledger.close()
        self.keys.close()

    @property
    def node_address(self) -> str:
        """Return the node wallet's address (the caller of keyless local calls)."""
        from permastore.protocol.wallet import address_of

        return address_of(self.store.signer.owner)

    # -- processes

    def default_process(self, model_id: str) -> str:
        """Given a model ID, return this node's process for plain OpenAI-style calls on it.

        Spawned once per model per server run (default settings, the model's own template).
        """
        from inference.processes import spawn

        from inference.processes import get_process

        with self._spawn_lock:
            pid = self._default_processes.get(model_id)
            if pid is None:
                pid = spawn(self.store, model_id, source=self.source)
                self._default_processes[model_id] = pid
                process = get_process(self.store, pid)
                # Every worker loads the model now, not during some caller's call.
                self.herder.warm(LOAD_ENGINE_JOB, {"model_path": str(process.model_path),
                                                   "settings": dict(process.record.settings)})
            return pid

    # -- pricing

    def needed(self, plan: Any) -> int:
        """Given a planned call, return its needed fee in real model tokens."""
        from inference.fees import needed_fee

        return needed_fee(self.config.fees, plan.prompt_tokens, plan.max_tokens)

    def quote_for(self, plan: Any) -> int:
        """Given a planned call, return the payment quoted now."""
        return self.herder.quote(self.needed(plan))

    def info(self) -> dict[str, Any]:
        """Return `GET /herder/info`: fees, last multiplier, queue length, workers."""
        return self.herder.info()

    # -- calls

    def start(self, plan: Any, caller: str, payment: int | None = None) -> RunningCall:
        """Given a planned call and its caller, reserve the fee, write the Message, queue the job.

        payment None pays the current quote. Raises PaymentRequired (nothing written).
        """
        from inference.credits import MAX_AMOUNT, InsufficientCredit
        from inference.fees import FeeError, multiplier_of
        from inference.processes import get_process, start_message, unsigned_call

        needed = self.needed(plan)
        quoted = self.herder.quote(needed)
        fee = quoted if payment is None else payment
        if fee > MAX_AMOUNT:
            raise InvalidPayment(f"payment {fee} is beyond the ledger's limit {MAX_AMOUNT}; lower max_tokens or payment")
        try:
            multiplier = multiplier_of(fee, needed)
        except FeeError as exc:
            raise PaymentRequired(str(exc), needed=needed, quote=quoted) from None
        reservation = None
        if fee > 0:
            try:
                reservation = self.ledger.reserve(caller, fee)
            except InsufficientCredit as exc:
                raise PaymentRequired(str(exc), needed=fee, balance=exc.balance, quote=quoted) from None
        # The worker starts on the prompt at once; the Message is signed meanwhile (its ID
        # seeds the sampler, sent as the job's late value) and stored durably while the
        # model runs; the Result waits for it.
        late: Future = Future()
        try:
            job = self.herder.submit(EXECUTE_JOB, unsigned_call(get_process(self.store, plan.process_id), plan).to_json(),
                                     multiplier, late=late)
        except BaseException:
            self.refund(reservation)
            raise
        try:
            prepared, message = start_message(self.store, plan, caller, fee)
        except BaseException as exc:
            late.set_exception(exc)  # the job fails; nothing was written
            self.refund(reservation)
            raise
        late.set_result(prepared.message_id)
        return RunningCall(self, prepared, job, reservation, fee, message)

    def charge(self, reservation: Any) -> None:
        """Settle a reservation as spent (no-op for free calls)."""
        if reservation is not None:
            self.ledger.charge(reservation)

    def refund(self, reservation: Any) -> None:
        """Give a reservation back (no-op for free calls)."""
        if reservation is not None:
            self.ledger.refund(reservation)

    def credit(self, address: str, amount: int) -> str:
        """Credit an address; return the Credit-Notice record ID."""
        return self.ledger.credit(address, amount, store=self.store)
