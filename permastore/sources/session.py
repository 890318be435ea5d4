"""FetchSession: one object fetched from many peers at once, proven, stored as it arrives, readable meanwhile.

A session runs on its own threads: it plans (header, proofs, lanes), opens the object's
partial writer (resuming what a killed fetch left), starts workers per peer, makes what
they write durable in batches, and completes the object. Readers (the gateway streaming
to a client, a peer's range request) wait for the chunks they need with ``wait_held`` and
read them with ``read``; those chunks are fetched first.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from permastore.protocol.errors import InvalidProof, ProtocolError
from permastore.sources import proofs
from permastore.sources.base import UpstreamError
from permastore.sources.limits import TransferTooSlow
from permastore.sources.scheduler import Assignment, ChunkScheduler, FetchSettings, Lane
from permastore.store.errors import DataMismatch, NotFound, PartialClosed, StoreError

if TYPE_CHECKING:
    from permastore.sources.planner import FetchPlan
    from permastore.store.partial_writer import PartialWriter

log = logging.getLogger(__name__)

COMMIT_POLL_S = 0.1
READ_PIECE = 4 * 1024 * 1024


class _WholeCheckFailed(UpstreamError):
    """An object checked only when complete (no per-chunk proof) did not verify; nothing of it was kept."""


@dataclass
class FetchReport:
    """What a finished (or failed) fetch did, for progress bars and logs."""

    id: str
    data_size: int = 0
    held_before: int = 0
    received: dict = field(default_factory=dict)  # peer URL -> bytes it sent
    refetched: int = 0
    dropped: dict = field(default_factory=dict)  # peer URL -> reason
    seconds: float = 0.0
    phases: dict = field(default_factory=dict)  # seconds spent, summed over workers: receive, prove, store, ...

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds  # (a dict update is atomic under the GIL)


class FetchSession:
    """Given the fetcher (store, planner, settings, rate bucket) and an ID, fetch that object once."""

    def __init__(self, fetcher, id: str):
        self.fetcher = fetcher
        self.store = fetcher.store
        self.settings: FetchSettings = fetcher.settings
        self.id = id
        self.plan: FetchPlan | None = None
        self.writer: PartialWriter | None = None
        self.scheduler: ChunkScheduler | None = None
        self.info = None
        self.error: BaseException | None = None
        self.report = FetchReport(id)
        self.planned = threading.Event()
        self.done = threading.Event()
        self._cond = threading.Condition()
        self._listeners: list = []
        self._buffers = threading.local()
        self._started = time.monotonic()
        self.thread = threading.Thread(target=self._run, name=f"fetch-{id[:8]}", daemon=True)

    # -- what runs once planned (the fetch and its workers) reads these: set before they start

    @property
    def _plan(self) -> FetchPlan:
        assert self.plan is not None, "used before planning"
        return self.plan

    @property
    def _writer(self) -> PartialWriter:
        assert self.writer is not None, "used before the partial object is open"
        return self.writer

    @property
    def _scheduler(self) -> ChunkScheduler:
        assert self.scheduler is not None, "used before the partial object is open"
        return self.scheduler

    # -- running ---------------------------------------------------------------------------

    def start(self) -> FetchSession:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.fetcher.learn_peers()
            began = time.perf_counter()
            self.plan = self.fetcher.planner.plan(self.id)
            self.report.add("planning", time.perf_counter() - began)
            if self.plan is None:  # held whole now (inline data, a parent unbundled, fetched meanwhile)
                self.info = self.store.info(self.id)
            else:
                self._fetch_verified()
        except BaseException as exc:  # reported to every waiter; the partial object stays for a resume
            self.error = exc
            log.warning("fetch of %s failed: %s", self.id, exc)
        finally:
            if self.writer is not None:
                self._writer.close()
            self.report.seconds = time.monotonic() - self._started
            self.planned.set()
            self.done.set()
            self._signal()
            self.fetcher._finished(self)

    def _fetch_verified(self) -> None:
        """Fetch and complete; when a whole-object check fails on bytes from several peers (no per-chunk
        proof can name the liar), fetch it again from one peer at a time."""
        rounds = [self._plan.lanes]
        if not self._plan.chunk_proven and len(self._plan.lanes) > 1:
            rounds += [[lane] for lane in self._plan.lanes]
        for number, lanes in enumerate(rounds):
            if number:
                if lanes[0].dropped and not lanes[0].bad:
                    continue  # it does not have the object (or is too slow): not worth a round
                self._plan.lanes = [Lane(lane.client, lane.mode, lane.weave_start, lane.holding) for lane in lanes]
            self._open()
            self._signal(planned=True)
            self._fetch()
            try:
                self.info = self._complete()
                return
            except _WholeCheckFailed as exc:
                if number == len(rounds) - 1:
                    raise
                log.warning("%s; fetching it again from one peer at a time", exc)

    def _open(self) -> None:
        plan = self._plan
        store_proof = "chunks" if plan.kind == "tx" and plan.proof == "chunks" else "end"
        self.writer = self.store.open_partial(
            plan.id, plan.kind, plan.data_size, plan.raw_header, store_proof, plan.bundled_in, plan.leaves
        )
        held = [u.index for u in plan.units if self._unit_held(u)]
        self.report.data_size = plan.data_size
        self.report.held_before = self._writer.held_bytes
        self.scheduler = ChunkScheduler(plan.units, plan.lanes, self.settings, held)

    def _unit_held(self, unit) -> bool:
        start, end = self._object_span(unit)
        return self._writer.held(start) is not None

    def _object_span(self, unit) -> tuple[int, int]:
        """Given a unit of the source, return the bytes of the object it carries [start, end)."""
        base = self._plan.object_start
        return max(unit.start, base) - base, min(unit.end, base + self._plan.data_size) - base

    def _fetch(self) -> None:
        workers = [
            threading.Thread(target=self._work, args=(lane,), name=f"fetch-{self.id[:6]}-{n}", daemon=True)
            for lane in self._plan.lanes
            for n in range(self.settings.workers_for(lane.mode))
        ]
        for worker in workers:
            worker.start()
        scheduler = self._scheduler
        while not scheduler.finished:
            with scheduler.cond:
                scheduler.cond.wait(COMMIT_POLL_S)
            if self._writer.flush_due():
                began = time.perf_counter()
                self._writer.flush()
                self.report.add("durable batches", time.perf_counter() - began)
            if not any(worker.is_alive() for worker in workers):
                scheduler.fail("every worker ended with chunks still missing")  # no-op once all are in
        for worker in workers:
            worker.join()
        self._writer.flush()
        self._fill_report()
        if scheduler.failed:
            raise UpstreamError(f"{self.id}: {scheduler.failed}")

    def _fill_report(self) -> None:
        for lane in self._plan.lanes:
            self.report.received[lane.name] = self.report.received.get(lane.name, 0) + lane.sent
            if lane.dropped:
                self.report.dropped[lane.name] = lane.dropped
        self.report.refetched = self._scheduler.refetched

    def _complete(self):
        plan = self._plan
        check = None
        if plan.kind == "item":
            check = proofs.ItemCheck(plan.raw_header)
        elif plan.proof == "end":
            self._check_root()
        began = time.perf_counter()
        try:
            return self._writer.complete(check)
        except (ProtocolError, DataMismatch) as exc:
            raise _WholeCheckFailed(f"{self.id}: the assembled object does not verify, nothing kept: {exc}") from None
        finally:
            self.report.add("completing", time.perf_counter() - began)

    def _check_root(self) -> None:
        """A tx fetched without per-chunk proofs: its chunks' SHA-256s must rebuild the signed data_root."""
        plan = self._plan
        leaves = []
        for unit in plan.units:
            held = self._writer.held(unit.start)
            if held is None or held.sha256 is None or held.size != unit.end - unit.start:
                raise UpstreamError(f"{self.id}: chunk at {unit.start} held without its hash")
            leaves.append(proofs.Leaf(unit.start, unit.end, held.sha256))
        if proofs.root_of(leaves, plan.data_size) != plan.source_root:
            self.store.abandon_partial(self.id, writer=self._writer)
            self.writer = None
            raise _WholeCheckFailed(f"{self.id}: data from the peers does not match its data_root, nothing kept")

    # -- workers -------------------------------------------------------------------------------

    def _work(self, lane: Lane) -> None:
        try:
            self._work_on(lane)
        except BaseException as exc:  # a bug must end the fetch with a reason, not leave it waiting
            log.exception("fetch worker for %s failed", lane.name)
            self._scheduler.fail(f"internal error: {exc!r}")

    def _work_on(self, lane: Lane) -> None:
        scheduler = self._scheduler
        while True:
            job = scheduler.next(lane)
            if job is None:
                return
            try:
                if lane.mode == "chunk":
                    self._fetch_chunk(job)
                else:
                    self._fetch_range(job)
            except NotFound as exc:
                if lane.holding is None and lane.mode == "raw":  # a peer that holds it whole does not 404
                    scheduler.finished_job(job, str(exc), lacks=True)
                else:  # a partial peer (or an Arweave node's /chunk) lacks these chunks: not a bad peer
                    scheduler.not_held(job, str(exc))
                    scheduler.finished_job(job)
            except TransferTooSlow as exc:  # too slow to matter
                scheduler.finished_job(job, str(exc), lacks=True)
            except (StoreError, ProtocolError, OSError, ValueError) as exc:
                if isinstance(exc, StoreError) and not isinstance(exc, UpstreamError):
                    scheduler.fail(f"cannot store what was fetched: {exc}")  # our disk, not their bytes
                scheduler.finished_job(job, str(exc))
            else:
                scheduler.finished_job(job)

    def _fetch_chunk(self, job: Assignment) -> None:
        plan, unit, lane = self._plan, job.units[0], job.lane
        assert plan.source_root is not None and lane.weave_start is not None  # a chunk lane proves by data_path
        chunk, path = lane.client.chunk(lane.weave_start + unit.end - 1)
        self.fetcher.bucket.take(len(chunk))
        self._scheduler.progress(job, len(chunk))
        try:
            leaf = proofs.check_chunk(plan.source_root, plan.source_size, unit.start, unit.end, chunk, path)
            if unit.leaf is not None and leaf.sha256 != unit.leaf.sha256:
                raise InvalidProof("chunk differs from its proven leaf")
        except InvalidProof as exc:
            self._scheduler.refused(job, unit, str(exc))
            return
        self._deliver(job, unit, chunk, leaf.sha256)

    def _fetch_range(self, job: Assignment) -> None:
        """One ranged request for a run of units, read into this worker's buffer; each unit is
        checked and written as soon as it is whole."""
        plan, lane, units = self._plan, job.lane, job.units
        first = units[0].start
        size = units[-1].end - first
        view = self._buffer(size)
        deadline = time.monotonic() + self.fetcher.limits.deadline_s
        at, seen = 0, 0
        reads = lane.client.read_into(plan.source_id, first, view, deadline)
        report = self.report
        try:
            began = time.perf_counter()
            for got in reads:
                report.add("receiving", time.perf_counter() - began)
                self.fetcher.bucket.take(got - seen)
                self._scheduler.progress(job, got - seen)
                seen = got
                while at < len(units) and got >= units[at].end - first:
                    unit = units[at]
                    at += 1
                    if not self._check_and_deliver(job, unit, view[unit.start - first : unit.end - first]):
                        return  # a bad chunk: the rest of this answer is not read
                if at < len(units) and not self._scheduler.still_wanted(job):
                    return  # every unit left was proven from another peer meanwhile
                began = time.perf_counter()
        finally:
            reads.close()

    def _buffer(self, size: int) -> memoryview:
        """This worker thread's receive buffer (reused between requests), as a view of size bytes."""
        held = getattr(self._buffers, "buffer", None)
        if held is None or len(held) < size:
            held = self._buffers.buffer = bytearray(size)
        return memoryview(held)[:size]

    def _check_and_deliver(self, job: Assignment, unit, data) -> bool:
        began = time.perf_counter()
        sha = None
        if self._plan.chunk_proven and unit.leaf is not None:
            try:
                sha = proofs.check_leaf(unit.leaf, data)
            except InvalidProof as exc:
                self._scheduler.refused(job, unit, str(exc))
                return False
        elif self._plan.kind == "tx":
            sha = hashlib.sha256(data).digest()  # checked against data_root when complete
        proven = time.perf_counter()
        self.report.add("proving", proven - began)
        self._deliver(job, unit, data, sha)
        self.report.add("storing", time.perf_counter() - proven)
        return True

    def _deliver(self, job: Assignment, unit, data: bytes, sha: bytes | None) -> None:
        start, end = self._object_span(unit)
        skip = start + self._plan.object_start - unit.start  # a bundle chunk may begin before the item
        piece = data if (skip, end - start) == (0, len(data)) else data[skip : skip + end - start]
        self._writer.write(start, piece, sha if piece is data else None)
        if self._scheduler.delivered(job, unit):
            self._signal()

    # -- readers ----------------------------------------------------------------------------------

    @property
    def servable(self) -> bool:
        """True when held bytes may be read before the object completes (a tx proven chunk by chunk)."""
        return self.plan is not None and self.plan.kind == "tx" and self.plan.proof == "chunks"

    def stop(self, reason: str) -> None:
        """End the fetch early (chunks already in stay held for a resume; a complete one still completes)."""
        if self.scheduler is not None:
            self.scheduler.fail(reason)

    def add_listener(self, callback) -> None:
        """Given a callable, call it (from a fetch thread) whenever chunks arrive or the session ends."""
        with self._cond:
            self._listeners.append(callback)

    def remove_listener(self, callback) -> None:
        with self._cond:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _signal(self, planned: bool = False) -> None:
        if planned:
            self.planned.set()
        with self._cond:
            listeners = list(self._listeners)
            self._cond.notify_all()
        for callback in listeners:
            callback()

    def want(self, offset: int) -> None:
        """Given an object offset a reader needs next, have its chunk fetched first."""
        plan, scheduler = self.plan, self.scheduler
        if scheduler is not None and plan is not None and self.servable and 0 <= offset < plan.data_size:
            from permastore.store import chunk_layout

            scheduler.want(chunk_layout.chunk_index_of(plan.data_size, offset))

    def available(self, start: int, limit: int = READ_PIECE) -> int:
        """Given an offset, return how many bytes from it can be read now (0: wait; raises if the fetch failed)."""
        if self.done.is_set() and self.info is not None:
            return min(limit, self.info.data_size - start)
        if self.error is not None:
            raise UpstreamError(f"{self.id}: fetch failed: {self.error}")
        plan, writer = self.plan, self.writer
        if not self.servable or writer is None or plan is None:
            return 0
        end = min(start + limit, plan.data_size)
        got = start
        while got < end:
            held = writer.covering(got, got + 1)
            if not held:
                break
            got = held[0].offset + held[0].size
        return max(min(got, end) - start, 0)

    def read(self, start: int, end: int) -> bytes:
        """Given a span that ``available`` said is here, return its verified bytes."""
        if self.done.is_set() and self.info is not None:
            return b"".join(self.store.read(self.id, start, end))
        writer = self.writer
        if writer is not None and writer.fd >= 0:
            try:
                return writer.read(start, end)
            except PartialClosed:  # completed (or given up) just now: the store has it, or says why not
                pass
        self.done.wait(30)
        return b"".join(self.store.read(self.id, start, end))

    def wait_held(self, start: int, timeout: float) -> int:
        """Block until bytes from start are readable (or the fetch ends); return how many (0 on timeout)."""
        self.want(start)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                count = self.available(start)
                if count or time.monotonic() > deadline:
                    return count
                if self.done.is_set():
                    return self.available(start)
                self._cond.wait(min(0.5, max(deadline - time.monotonic(), 0.01)))

    def wait(self, timeout: float | None = None):
        """Block until the session ends; return the stored ObjectInfo or raise what failed."""
        if not self.done.wait(timeout):
            raise UpstreamError(f"{self.id}: fetch still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.info
