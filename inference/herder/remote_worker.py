"""A remote worker node: leases calls from a head's herder, runs them here, answers with Results it signs.

    node = WorkerNode.open(store, "http://head:1984")
    node.run(stop)          # until `stop` (a threading.Event) is set

The node has its own data folder and wallet. For each leased call it loads the Process
record and the model by ID through its store, fetching what it lacks from the head (the
fetch engine, every chunk proven; the model checked against its ID before any answer),
runs the call with the recorded settings through `inference.execution.execute` (what
the head's own worker processes run, so the tokens are the same), renews the lease with
heartbeats that carry the text streamed so far, and posts the Result signed by its
wallet. A head that refuses a heartbeat (the lease lapsed) stops the call here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from inference.context import Inference
from inference.engine import EngineCache
from inference.errors import InferenceError
from inference.execution import execute
from inference.generation import Generation
from inference.herder.leases import sign_request
from inference.herder.remote_link import HeadAnswer, HeadLink, HeadUnreachable
from inference.herder.remote_results import result_record
from inference.processes import PreparedCall
from permastore.protocol.wallet import address_of

log = logging.getLogger("inference.herder.worker_node")

LEASE_WAIT_S = 10.0  # one lease request waits this long on the head for a call
STREAM_INTERVAL_S = 0.2  # streamed text goes to the head at most this often
RETRY_S = 1.0  # after the head could not be reached
DEFAULT_SLOTS = 2  # calls leased at once (the engine runs one at a time; see WorkerNode.run)


class LeaseLost(Exception):
    """The head ended this worker's lease (it lapsed, or the head closed): the call stops here."""


def run_call(call: PreparedCall, engines: EngineCache, on_text) -> Generation:
    """Given a prepared call (seed set), run it here: the same path as the head's worker processes."""
    return execute(call, engines, on_text=on_text)


class LeaseWatch:
    """One lease being renewed while its call runs: the text streamed since the last beat, and whether it was lost."""

    def __init__(self, lease_id: str, ttl_s: float):
        self.lease_id = lease_id
        self.interval = max(0.05, min(ttl_s / 3, STREAM_INTERVAL_S * 5))
        self.lost = threading.Event()
        self.last = time.monotonic()
        self._pending: list[str] = []
        self._lock = threading.Lock()

    def on_text(self, piece: str) -> None:
        """Keep a streamed piece for the next beat; raise LeaseLost when the lease has ended (stops llama.cpp)."""
        if self.lost.is_set():
            raise LeaseLost(f"lease {self.lease_id} ended")
        with self._lock:
            self._pending.append(piece)

    def take_if_due(self, now: float) -> list[str] | None:
        """Return the text to send when a beat is due (text pending, or the interval passed), else None."""
        with self._lock:
            if not self._pending and now - self.last < self.interval:
                return None
            events, self._pending = self._pending, []
        self.last = now
        return events


class Heartbeat:
    """Renews a slot's current lease while its call runs, sending the text streamed since the last beat.

    One thread per slot for the node's life, not one per call: a short call (done before
    its first beat is due) costs the worker no thread start and no signed request.
    """

    def __init__(self, node: WorkerNode):
        self.node = node
        self._watch: LeaseWatch | None = None
        # Held while a beat is sent: a lease's block ends only after its last beat is answered, so
        # the head has every streamed piece before the Result (which ends the call's stream).
        self._beating = threading.Lock()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="lease-heartbeat", daemon=True)
        self._thread.start()

    @contextmanager
    def watching(self, lease_id: str, ttl_s: float) -> Iterator[LeaseWatch]:
        """Renew this lease until the block ends."""
        watch = LeaseWatch(lease_id, ttl_s)
        with self._cond:
            self._watch = watch
        try:
            yield watch
        finally:
            with self._beating:
                self._watch = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(10)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._stopped:
                    self._cond.wait(STREAM_INTERVAL_S)
                if self._stopped:
                    return
            with self._beating:
                watch = self._watch
                events = watch.take_if_due(time.monotonic()) if watch is not None else None
                if watch is not None and events is not None:
                    self.beat(watch, events)

    def beat(self, watch: LeaseWatch, events: list[str]) -> None:
        try:
            answer = self.node.post_signed(f"/herder/leases/{watch.lease_id}/heartbeat", {"events": events})
        except HeadUnreachable as exc:
            log.warning("heartbeat failed: %s", exc)
            return
        if answer.status_code in (403, 409):
            watch.lost.set()


class WorkerNode:
    """Given this node's inference context (its store fetching through the head) and the head's URL, run leased calls."""

    def __init__(self, inference: Inference, head_url: str):
        self.inference = inference
        self.head_url = head_url.rstrip("/")
        self.link = HeadLink(self.head_url, LEASE_WAIT_S + 30)
        self.signer = inference.store.signer
        self.address = address_of(self.signer.owner)
        self.head_address = ""
        self.calls = 0
        self._lock = threading.Lock()

    @classmethod
    def open(cls, store, head_url: str) -> WorkerNode:
        """Given the worker's store and the head's URL, return the node (the head is its one peer)."""
        from permastore.sources import ReadThroughSource, UpstreamSource
        from permastore.sources.engine import Fetcher

        head_url = head_url.rstrip("/")
        fetcher = Fetcher(store, [head_url])
        source = ReadThroughSource(UpstreamSource(head_url), store, fetcher=fetcher)
        # operator trust: the operator chose the head; the worker runs the models its calls name.
        inference = Inference.open(store, source=source)
        return cls(inference, head_url)

    def close(self) -> None:
        self.link.close()
        self.inference.close()

    def post_signed(self, path: str, body: dict[str, Any]) -> HeadAnswer:
        item = sign_request(self.signer, self.head_address, body)
        return self.link.post(path, item)

    def connect(self, stop: threading.Event) -> bool:
        """Learn the head's address from its GET /herder/info (waiting for the head); False when stopped first."""
        while not stop.is_set():
            try:
                answer = self.link.get("/herder/info")
                if answer.status_code == 200 and answer.json().get("head_address"):
                    self.head_address = answer.json()["head_address"]
                    return True
                log.warning("head %s: herder not ready (%s)", self.head_url, answer.status_code)
            except (HeadUnreachable, ValueError) as exc:
                log.warning("head %s unreachable: %s", self.head_url, exc)
            stop.wait(RETRY_S)
        return False

    def run(self, stop: threading.Event, slots: int = DEFAULT_SLOTS) -> None:
        """Lease and run calls on `slots` threads until `stop` is set.

        The engine runs one call at a time; a second slot signs and posts one call's Result,
        and leases the next, while the engine runs another (as the head's settling threads
        do for its local workers).
        """
        if not self.connect(stop):
            return
        threads = [threading.Thread(target=self._slot, args=(stop,), name=f"worker-slot-{n}", daemon=True)
                   for n in range(slots)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _slot(self, stop: threading.Event) -> None:
        heartbeat = Heartbeat(self)
        try:
            while not stop.is_set():
                try:
                    grant = self.lease()
                except HeadUnreachable as exc:
                    log.warning("lease request failed: %s", exc)
                    stop.wait(RETRY_S)
                    continue
                while grant is not None and not stop.is_set():
                    try:
                        grant = self.work(grant, heartbeat)
                    except HeadUnreachable as exc:
                        log.warning("posting a Result failed: %s", exc)
                        grant = None
        finally:
            heartbeat.stop()

    def lease(self) -> dict[str, Any] | None:
        """Ask the head for a call (waiting on it up to LEASE_WAIT_S); return the grant or None."""
        answer = self.post_signed("/herder/lease", {"wait_s": LEASE_WAIT_S})
        if answer.status_code == 204:
            return None
        if answer.status_code != 200:
            raise HeadUnreachable(f"head refused the lease request: {answer.status_code} {answer.text[:300]}")
        return answer.json()

    def work(self, grant: dict[str, Any], heartbeat: Heartbeat) -> dict[str, Any] | None:
        """Run one leased call and post its signed Result (or tell the head it could not); return the
        next lease the head granted with its answer, if any."""
        lease_id = grant["lease"]
        with heartbeat.watching(lease_id, float(grant["ttl_s"])) as watch:
            try:
                call = self.prepare(grant["call"])
                generation = run_call(call, self.inference.engines, watch.on_text)
                self.inference.processes.get(call.process_id).verified.result()  # weights match their ID
            except LeaseLost:
                log.warning("lease %s lapsed while running; call dropped here", lease_id)
                return None
            except (InferenceError, OSError, ValueError, KeyError) as exc:
                log.error("cannot run leased call: %s", exc)
                self.post_signed(f"/herder/leases/{lease_id}/give-up", {"reason": f"{type(exc).__name__}: {exc}"})
                return None
        # The text not streamed yet needs no beat: the head streams the rest of the Result's text.
        signed = self.inference.records.sign(result_record(call, generation))
        # The answer may carry the next lease: the Result (signed, the lease's first answer) asks for it.
        answer = self.link.post(f"/herder/leases/{lease_id}/result", signed.item, params={"next_wait_s": LEASE_WAIT_S})
        if answer.status_code != 200:
            log.warning("head refused the Result of lease %s: %s %s", lease_id, answer.status_code, answer.text[:300])
            return None
        with self._lock:
            self.calls += 1
        return answer.json().get("next")

    def prepare(self, leased: dict[str, Any]) -> PreparedCall:
        """Given the leased call, return it as it runs here: the Process record's settings, this node's model file."""
        process = self.inference.processes.get(leased["process_id"])  # record and model fetched from the head
        sampling = dict(leased["sampling"])
        if not isinstance(sampling.get("seed"), int):
            raise ValueError("the leased call has no seed")
        return PreparedCall(process.id, leased["message_id"], int(leased["nonce"]), process.record.model,
                            str(process.model_path), dict(process.record.settings), str(leased["prompt"]),
                            bool(leased["parse_special"]), sampling)
