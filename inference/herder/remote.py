"""The head's side of remote workers: calls from the herder's queue leased to allowed worker nodes.

    herd = RemoteHerd(service, allowed=[address, ...], ttl_s=10, verify_fraction=0.05)
    grant = herd.lease(request, wait_s)        # a queued call (or a check) for this worker, or None
    herd.heartbeat(request, lease_id)          # renews the lease, relays streamed text
    herd.complete(lease_id, result_item)       # the worker's signed Result: the call is answered
    herd.give_up(request, lease_id)            # the worker cannot run it: back to the queue

Remote workers take calls from the same priority queue as the local worker slots (a worker
already running a call leaves one to a worker waiting with none), so the head keeps pricing,
credits, the queue order and the records: a leased call is one the
service already priced, reserved and signed the Message of. The worker's Result is checked
against the call, stored, and delivered to the call as a local worker's output would be;
the service then writes the owner's Result (naming the worker's) and settles the fee.
A lease that lapses gives its call back to the queue (or answers it with an error once its
attempts are used up, or when text was already streamed); see `leases`.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from inference.errors import HerderClosed, HerderError, RecordInvalid, WorkerLost
from inference.execution import execute_job
from inference.herder.calls import Call
from inference.herder.leases import Lease, LeaseBook, LeaseRefused, RequestVerifier, WorkerRequest
from inference.herder.remote_results import WORKER, WORKER_RESULT, generation_of, parse_worker_result
from inference.herder.verification import Check, Checker
from inference.processes import PreparedCall
from permastore.protocol import ans104
from permastore.protocol.errors import ProtocolError

log = logging.getLogger("inference.herder")

DEFAULT_LEASE_TTL_S = 10.0
MAX_WAIT_S = 20.0  # longest a lease request waits for a call
POLL_SLICE_S = 0.1  # while waiting, checks queued meanwhile are looked at this often
LATE_WAIT_S = 30.0  # a leased call's Message is signed within this long, or the call fails
MAX_UNSTARTED = 2  # lapsed leases of a call with no heartbeat that do not use up an attempt
DEFER_S = 0.002  # a busy worker's request, leaving a call to an idle one, looks again this much later
NO_WORKER_TTLS = 3  # with --workers 0, queued calls are answered once no worker asked for this many TTLs


@dataclass
class WorkerStats:
    """What the head knows of one remote worker."""

    address: str
    leases: int = 0
    calls_done: int = 0
    checks_done: int = 0
    given_up: int = 0
    expired: int = 0
    last_seen: float = 0.0

    def to_json(self, banned: bool) -> dict[str, Any]:
        return {"address": self.address, "leases": self.leases, "calls_done": self.calls_done,
                "checks_done": self.checks_done, "given_up": self.given_up, "leases_expired": self.expired,
                "last_seen_s_ago": round(time.time() - self.last_seen, 3) if self.last_seen else None,
                "banned": banned}


@dataclass
class CallWork:
    """A leased call: the pool's Call, its signed PreparedCall, and the text streamed so far."""

    call: Call
    prepared: PreparedCall
    call_json: dict[str, Any]  # prepared.to_json(), built once: what the worker gets and its Result must answer
    streamed: str = ""
    beats: int = 0  # heartbeats received: 0 means the worker may never have had the call


class RemoteHerd:
    """Given the call service and the allowed worker addresses, lease its queued calls to remote workers."""

    def __init__(self, service, allowed: Iterable[str], ttl_s: float = DEFAULT_LEASE_TTL_S,
                 verify_fraction: float = 0.05):
        self.service = service
        self.pool = service.pool
        self.allowed = frozenset(allowed)
        self.verifier = RequestVerifier(service.node_address)
        self.leases = LeaseBook(ttl_s, self._expired, self._answer_unserved)
        self.started_at = time.monotonic()
        self._closed = False
        self.checker = Checker(self, verify_fraction, service.inference.store.root)
        self._signed: weakref.WeakKeyDictionary[Call, PreparedCall] = weakref.WeakKeyDictionary()
        self._unconfirmed: weakref.WeakKeyDictionary[Call, int] = weakref.WeakKeyDictionary()
        self._workers: dict[str, WorkerStats] = {}
        self._waiting: dict[str, int] = {}  # lease requests waiting, per worker
        self._lock = threading.Lock()

    # -- from the service

    def message_signed(self, call: Call, prepared: PreparedCall) -> None:
        """The service signed a queued call's Message: remember the call as leasable (seed known)."""
        with self._lock:
            self._signed[call] = prepared

    @property
    def local_workers(self) -> int:
        return self.pool.config.workers

    # -- worker requests

    def check_worker(self, request: WorkerRequest) -> WorkerStats:
        """Refuse (403) a worker not allowed or banned; return its stats, seen now."""
        # Security: only wallets the operator named may take calls (and see prompts).
        if request.worker not in self.allowed:
            raise LeaseRefused(403, f"worker {request.worker} is not allowed here (serve --allow-worker ADDRESS)")
        if self.checker.is_banned(request.worker):
            raise LeaseRefused(403, f"worker {request.worker} is banned: its output differed from a check")
        with self._lock:
            stats = self._workers.setdefault(request.worker, WorkerStats(request.worker))
            stats.last_seen = time.time()
            return stats

    def lease(self, request: WorkerRequest, wait_s: float, gone: Callable[[], bool] | None = None) -> dict[str, Any] | None:
        """Given a verified lease request, wait up to wait_s for work; return the grant, or None.

        `gone()` True: the worker hung up while waiting (a call is not leased to a dead request).
        """
        stats = self.check_worker(request)
        with self._lock:
            self._waiting[request.worker] = self._waiting.get(request.worker, 0) + 1
        try:
            return self._wait_for_work(stats, min(max(wait_s, 0.0), MAX_WAIT_S), gone)
        finally:
            with self._lock:
                self._waiting[request.worker] -= 1

    def _wait_for_work(self, stats: WorkerStats, wait_s: float, gone: Callable[[], bool] | None) -> dict[str, Any] | None:
        deadline = time.monotonic() + wait_s
        while not self._closed:
            stats.last_seen = time.time()  # a worker waiting here is present
            check = self.checker.take_for(stats.address)
            if check is not None:
                return self._grant(stats, check, check.call)
            remaining = deadline - time.monotonic()
            if gone is not None and gone():
                return None
            call = self.pool.queue.get(timeout=max(0.0, min(POLL_SLICE_S, remaining)))
            if call is not None and ((gone is not None and gone()) or self._idle_one_waits(stats.address)):
                self._put_back(call)  # wakes the other waiter
                if (gone is not None and gone()) or remaining <= 0:
                    return None  # past its wait: a deferring busy worker does not loop on
                time.sleep(DEFER_S)
                continue
            if call is not None:
                work = self._leasable(call)
                if work is not None:
                    return self._grant(stats, work, work.call_json)
            if remaining <= 0:
                return None
        return None

    def _idle_one_waits(self, worker: str) -> bool:
        """True when this worker already runs a call and another one, running none, waits for one:
        that one can start it now, where this one would queue it behind its engine's current call."""
        held = self.leases.held_by()
        if held.get(worker, 0) == 0:
            return False
        with self._lock:
            return any(count > 0 and held.get(other, 0) == 0 and other != worker
                       for other, count in self._waiting.items())

    def _leasable(self, call: Call) -> CallWork | None:
        """Given a call taken from the queue, return it as work for a remote worker (None: not for one)."""
        if call.job is not execute_job:
            if self.local_workers == 0:  # replays and other jobs run only on local slots: none here
                call.deliver("error", HerderError("this head runs no local workers (--workers 0), and only calls "
                                                  "are leased to remote ones; replay with `permastore replay ID`"))
                return None
            self._put_back(call)
            time.sleep(POLL_SLICE_S)
            return None
        try:
            if call.late is not None:
                call.late.result(LATE_WAIT_S)
        except Exception as exc:  # noqa: BLE001 - the Message could not be signed: the call fails
            call.deliver("error", WorkerLost(f"the call's Message was not signed: {exc}"))
            return None
        with self._lock:
            prepared = self._signed.get(call)
        if prepared is None:
            self._put_back(call)
            return None
        call.attempts += 1
        call.started_at = time.monotonic()
        return CallWork(call, prepared, prepared.to_json())

    def _grant(self, stats: WorkerStats, work: Any, call_json: dict[str, Any]) -> dict[str, Any]:
        lease = self.leases.grant(stats.address, work, self.pool.config.call_timeout_s)
        with self._lock:
            stats.leases += 1
        kind = "check" if isinstance(work, Check) else "call"
        return {"lease": lease.id, "ttl_s": lease.ttl_s, "kind": kind, "call": call_json}

    def heartbeat(self, request: WorkerRequest, lease_id: str) -> dict[str, Any]:
        """Renew a lease; relay the text the worker streamed since the last heartbeat. 409 once it has ended."""
        self.check_worker(request)
        lease = self.leases.renew(lease_id, request.worker)
        events = request.body.get("events") or []
        if isinstance(lease.work, CallWork):
            lease.work.beats += 1
        if isinstance(lease.work, CallWork) and isinstance(events, list):
            for piece in events:
                if isinstance(piece, str) and piece:
                    lease.work.streamed += piece
                    lease.work.call.deliver("event", piece)
        return {"lease": lease.id, "ttl_s": lease.ttl_s}

    def give_up(self, request: WorkerRequest, lease_id: str) -> None:
        """A worker cannot run its leased call: end the lease and hand the call on."""
        self.check_worker(request)
        lease = self.leases.end(lease_id, request.worker)
        with self._lock:
            self._workers[request.worker].given_up += 1
        log.warning("worker %s gave up lease %s: %s", request.worker, lease_id, request.body.get("reason"))
        self._hand_back(lease, WorkerLost(f"worker {request.worker} could not run the call: "
                                          f"{str(request.body.get('reason'))[:300]}"))

    def complete(self, lease_id: str, worker: str, item: bytes) -> dict[str, Any]:
        """Given a lease and the worker's signed Result item, answer the call (once); return the Result's ID.

        Raises LeaseRefused: 409 when the lease has ended (expired, or already answered), 403
        for another worker's lease, 422 for a Result that does not answer the leased call.
        """
        stats = self.check_worker(WorkerRequest(worker, {}))
        lease = self.leases.peek(lease_id, worker)
        call_json = lease.work.call if isinstance(lease.work, Check) else lease.work.call_json
        try:
            result_id, record = parse_worker_result(item, worker, call_json)
        except RecordInvalid as exc:
            raise LeaseRefused(422, f"refused Result: {exc}") from None
        self.leases.end(lease_id, worker)  # Security: one answer per lease; a second one gets 409 here
        try:
            self._answer(lease, stats, worker, result_id, generation_of(record))
        finally:
            # The worker's signed Result is kept as it came, stored here while a settling thread
            # signs the owner's Result (no hand-off to another thread: on busy cores it costs more
            # than it overlaps). The worker hears back once it is stored.
            try:
                self.service.inference.store.put_item(item)
            except Exception as exc:  # noqa: BLE001 - the answer stands (the owner's Result repeats it)
                log.error("storing worker %s's Result %s failed: %s", worker, result_id, exc)
        return {"result": result_id}

    def complete_and_lease(self, lease_id: str, item: bytes, next_wait_s: float) -> dict[str, Any]:
        """Given a lease, the worker's signed Result item and how long to wait for its next call,
        answer the call; return {"result": ID} and, with next_wait_s > 0, `next`: the worker's
        next grant (None when no call came). One request per call for a busy worker.

        The accepted Result stands for the next lease request: it is signed by the worker's
        wallet, the lease's first answer (a copy is refused with 409), so it proves who asks.
        """
        try:
            worker = ans104.parse_header(item).owner_address  # the signature is checked with the record
        except ProtocolError as exc:
            raise LeaseRefused(400, f"not an ANS-104 item: {exc}") from None
        answer = self.complete(lease_id, worker, item)
        if next_wait_s > 0:
            answer["next"] = self.lease(WorkerRequest(worker, {}), next_wait_s)
        return answer

    def _answer(self, lease: Lease, stats: WorkerStats, worker: str, result_id: str, generation) -> None:
        """Given a lease answered with a checked Result, hand its output to the call (or to its check)."""
        with self._lock:
            if isinstance(lease.work, Check):
                stats.checks_done += 1
            else:
                stats.calls_done += 1
        if isinstance(lease.work, Check):
            self.checker.remote_done(lease.work, worker, result_id, generation)
            return
        work: CallWork = lease.work
        rest = generation.text[len(work.streamed):] if generation.text.startswith(work.streamed) else ""
        if rest:
            work.call.deliver("event", rest)
        answer = generation.to_json()
        answer["timings"] = {**answer["timings"], WORKER: worker, WORKER_RESULT: result_id}
        work.call.deliver("done", answer)
        self.checker.maybe_check(work.call_json, worker, result_id, generation)

    # -- leases that end badly

    def _expired(self, lease: Lease) -> None:
        with self._lock:
            stats = self._workers.get(lease.worker)
            if stats is not None:
                stats.expired += 1
        log.warning("lease %s of worker %s expired", lease.id, lease.worker)
        self._hand_back(lease, WorkerLost(f"worker {lease.worker} stopped renewing its lease"))

    def _hand_back(self, lease: Lease, failure: WorkerLost) -> None:
        """Give a lost lease's work to someone else, or answer the call with the failure."""
        if isinstance(lease.work, Check):
            self.checker.requeue(lease.work, lease.worker)
            return
        call = lease.work.call
        if lease.work.beats == 0 and self._unstarted(call) <= MAX_UNSTARTED:
            call.attempts -= 1  # never confirmed by a heartbeat: the grant may not have reached a live worker
        # As the pool does: a retry is only invisible when the caller has seen nothing.
        if call.attempts <= self.pool.config.retries and call.events_sent == 0:
            try:
                self.pool.queue.put_back(call)
                return
            except HerderClosed as exc:
                failure = WorkerLost(str(exc))
        call.deliver("error", failure)

    def _unstarted(self, call: Call) -> int:
        """Count one more lease of this call that lapsed unconfirmed; return how many it has had."""
        with self._lock:
            self._unconfirmed[call] = self._unconfirmed.get(call, 0) + 1
            return self._unconfirmed[call]

    def _put_back(self, call: Call) -> None:
        try:
            self.pool.queue.put_back(call)
        except HerderClosed as exc:
            call.deliver("error", exc)

    def _answer_unserved(self) -> None:
        """With no local slots and no allowed worker seen for NO_WORKER_TTLS leases' time, answer the
        waiting calls (503) instead of keeping callers, and a shutdown, waiting for a worker that is not there."""
        if self.local_workers > 0 or self._closed or self.leases.live():
            return
        with self._lock:
            seen = max([w.last_seen for w in self._workers.values() if not self.checker.is_banned(w.address)],
                       default=0.0)
        quiet_s = min(time.time() - seen, time.monotonic() - self.started_at)
        if quiet_s < NO_WORKER_TTLS * self.leases.ttl_s:
            return
        for call in self.pool.queue.take_all():
            call.deliver("error", WorkerLost(f"no worker took the call: this head runs none itself (--workers 0) "
                                             f"and no allowed worker asked for calls in {quiet_s:.0f} s"))

    # -- state

    def info(self) -> dict[str, Any]:
        """Return the remote part of `GET /herder/info`: workers, leases, checks, mismatches, bans."""
        with self._lock:
            workers = list(self._workers.values())
        live = self.leases.live()
        return {
            "head_address": self.service.node_address,
            "allowed_workers": sorted(self.allowed),
            "remote_workers": [w.to_json(self.checker.is_banned(w.address)) for w in workers],
            "leases": {"live": len(live), "expired": self.leases.expired, "ttl_s": self.leases.ttl_s,
                       "held": [{"lease": lease.id, "worker": lease.worker,
                                 "kind": "check" if isinstance(lease.work, Check) else "call",
                                 "age_s": round(time.monotonic() - lease.started_at, 3)} for lease in live]},
            **self.checker.info(),
        }

    def close(self) -> None:
        """Stop leasing: live leases' calls are answered with HerderClosed (the pool drains the queue)."""
        self._closed = True
        for lease in self.leases.close():
            if isinstance(lease.work, CallWork):
                lease.work.call.deliver("error", HerderClosed("herder is shutting down"))
        self.checker.close()
