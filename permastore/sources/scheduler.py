"""ChunkScheduler: which chunks to ask of which peer, and when to stop asking a peer.

A fetch is a list of units (chunks of the L1 tx that proves the bytes). Each peer has a
lane: its workers ask ``next(lane)`` for an assignment (a run of missing chunks for a
peer that serves ranged raw bytes, one chunk for a peer on the standard ``/chunk`` route).
- Many chunks are in flight (``max_in_flight``, ``per_peer`` each); faster peers ask more
  often, and when the global budget binds a freed slot goes to the fastest waiting peer.
- Chunks a reader waits for (``want``) are handed out first.
- An assignment with no byte for ``stall_s`` is stalled: its chunks go to other peers.
- Once every missing chunk is assigned, idle peers hedge: they duplicate the oldest
  assignment of another peer; the first proven copy wins.
- A bad chunk (proof failed, wrong size, truncated) is given to another peer; a peer with
  ``max_bad`` bad chunks, or ``max_failures`` failed transfers, is dropped for this fetch.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RATE_SMOOTHING = 0.3  # weight of the newest transfer in a peer's measured rate
PIECES_PER_PEER = 3  # an object too small for this many pieces per raw peer gets smaller pieces
LACK_LIMIT = 16  # a peer that said "not held" for this many units and sent none is of no use to this fetch


@dataclass(frozen=True)
class Unit:
    """One chunk of the proving tx: bytes [start, end) of its data; ``leaf`` when its hash is known."""

    index: int
    start: int
    end: int
    leaf: Any = None


@dataclass
class FetchSettings:
    """How one fetch spreads over peers (defaults fit loopback and the open network alike)."""

    max_in_flight: int = 64  # chunks in flight over all peers (16 MiB: four 4 MiB pieces, or 64 /chunk requests)
    per_peer: int = 32  # chunks in flight to one peer (two pieces: one is read from its disk while one is sent)
    piece_chunks: int = 16  # chunks per ranged request (4 MiB: a peer's per-request cost is ~1 ms)
    stall_s: float = 5.0
    hedge: bool = True
    hedge_after_s: float = 0.5  # an assignment is duplicated only once it runs this late (and 2x its expected time)
    max_bad: int = 3
    max_failures: int = 5
    max_rate: float | None = None  # bytes/s over every transfer of the node (None: no cap)
    workers_per_peer: int = 0  # 0: as many as the peer's share can use (2-3 for ranged raw pieces, 8 on /chunk)

    def workers_for(self, mode: str) -> int:
        """Given a lane's mode, return how many workers ask that peer at once."""
        if self.workers_per_peer:
            return self.workers_per_peer
        if mode == "raw":
            return max(2, -(-self.per_peer // self.piece_chunks))
        return min(self.per_peer, 8)


@dataclass(eq=False)
class Lane:
    """One peer within one fetch: how it is asked, how it did."""

    client: Any
    mode: str  # "raw" (ranged /raw/{id}, chunks checked against leaves) or "chunk" (/chunk/{offset})
    weave_start: int | None = None  # chunk mode: the peer's weave offset of the tx's first byte
    holding: frozenset[int] | None = None  # a partial peer: the units it said it holds (None: all of them)
    in_flight: int = 0
    rate: float | None = None
    sent: int = 0  # bytes received from it
    bad: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    dropped: str | None = None
    delivered: int = 0  # units it sent that were proven and new
    lacked: int = 0  # units it answered "not held" for (not bad: a peer may hold part of an object)

    def may_send(self, index: int) -> bool:
        """True while this peer is in the fetch and may hold unit index."""
        return not self.dropped and (self.holding is None or index in self.holding)

    @property
    def name(self) -> str:
        return getattr(self.client, "base_url", repr(self.client))


@dataclass(eq=False)
class Assignment:
    lane: Lane
    units: list
    hedge: bool = False
    started: float = field(default_factory=time.monotonic)
    last_progress: float = field(default_factory=time.monotonic)
    stalled: bool = False
    refused: bool = False
    received: int = 0
    number: int = 0


class FetchFailed(Exception):
    """No peer left can give the missing chunks."""


class ChunkScheduler:
    """Given the units, the peers' lanes, settings and the units already held, hand out work."""

    def __init__(self, units: list[Unit], lanes: list[Lane], settings: FetchSettings, held=()):
        self.units = {u.index: u for u in units}  # a bundled item's units are a slice of its root's
        self.lanes = lanes
        self.settings = settings
        held = set(held)
        self.missing = [u.index for u in units if u.index not in held]  # sorted
        self.assigned: dict[int, list[Assignment]] = {}
        self.excluded: dict[int, set] = {}
        self.cond = threading.Condition()
        self.cursor = 0
        self.in_flight = 0
        self.refetched = 0
        self.failed: str | None = None
        self.waiting: set = set()  # peers waiting for budget (the one furthest below its share goes first)
        self._idle: set = set()  # peers with nothing they may send now (a partial peer past what it holds)
        self._numbers = itertools.count(1)
        self._live: list[Assignment] = []
        self.piece = self._piece_size()
        self._check_alive(every_unit=True)

    def _piece_size(self) -> int:
        """Chunks per ranged request: the settings' size, never more than a peer's or the fetch's
        budget (no piece could ever be granted), smaller when the object has too few pieces of that
        size for every raw peer to get several (a small object still spreads)."""
        s = self.settings
        raw = sum(1 for lane in self.lanes if lane.mode == "raw") or 1
        return max(1, min(s.piece_chunks, s.per_peer, s.max_in_flight, len(self.missing) // (PIECES_PER_PEER * raw)))

    @property
    def finished(self) -> bool:
        return not self.missing or self.failed is not None

    # -- handing out work ---------------------------------------------------------------

    def next(self, lane: Lane, timeout: float = 0.5) -> Assignment | None:
        """Given a peer's lane, block until there is work for it; None when the fetch is over for it."""
        with self.cond:
            while True:
                if self.finished or lane.dropped:
                    return None
                self._mark_stalled()
                self._idle.discard(lane)
                granted = self._grant(lane)
                if granted is not None:
                    self.waiting.discard(lane)
                    return granted
                if lane in self._idle:
                    self.waiting.discard(lane)
                else:
                    self.waiting.add(lane)
                self.cond.wait(timeout)

    def _grant(self, lane: Lane) -> Assignment | None:
        s = self.settings
        size = self.piece if lane.mode == "raw" else 1
        room = min(s.per_peer - lane.in_flight, s.max_in_flight - self.in_flight, size)
        unassigned = len(self.missing) - len(self.assigned)
        if room <= 0 or (room < size and unassigned >= size):
            return None  # no whole piece fits: wait for one (a cut piece costs a request for little)
        if self._more_deserving(lane):
            return None  # the budget is shared by measured rate: the peer furthest below its share goes first
        units = self._pick(lane, room)
        hedge = False
        if not units and s.hedge:
            units, hedge = self._hedge_pick(lane, room), True
        if not units:
            self._idle.add(lane)  # nothing it may send now: it does not hold back the others' share
            return None
        job = Assignment(lane, units, hedge=hedge, number=next(self._numbers))
        for unit in units:
            self.assigned.setdefault(unit.index, []).append(job)
        lane.in_flight += len(units)
        self.in_flight += len(units)
        self._live.append(job)
        return job

    def _share(self, lane: Lane) -> float:
        """The chunks in flight this peer deserves: the budget split by measured rate, at least one piece.

        A peer not measured yet counts as fast as the fastest (so every peer is tried).
        """
        live = [other for other in self.lanes if not other.dropped]
        measured = [other.rate for other in live if other.rate]
        fastest = max(measured, default=1.0)
        rates = {id(other): other.rate or fastest for other in live}
        total = sum(rates.values()) or 1.0
        floor = self.piece if lane.mode == "raw" else 1
        return max(floor, self.settings.max_in_flight * rates.get(id(lane), fastest) / total)

    def _more_deserving(self, lane: Lane) -> bool:
        """True when another waiting peer has less of its share in flight than this one."""
        mine = lane.in_flight / self._share(lane)
        return any(
            other is not lane and not other.dropped and other.in_flight < self.settings.per_peer
            and other.in_flight / self._share(other) < mine
            for other in self.waiting
        )  # fmt: skip

    def _free(self, index: int, lane: Lane) -> bool:
        return (
            not self.assigned.get(index) and lane not in self.excluded.get(index, ())
            and (lane.holding is None or index in lane.holding)
        )  # fmt: skip

    def _pick(self, lane: Lane, room: int) -> list[Unit]:
        """Missing, unassigned units this lane did not fail: from the wanted cursor on, then from the start."""
        start = bisect.bisect_left(self.missing, self.cursor)
        for position in itertools.chain(range(start, len(self.missing)), range(0, start)):
            index = self.missing[position]
            if not self._free(index, lane):
                continue
            run = [self.units[index]]
            if lane.mode == "raw":
                follow = position + 1
                while len(run) < room and follow < len(self.missing):
                    nxt = self.missing[follow]
                    if nxt != run[-1].index + 1 or not self._free(nxt, lane):
                        break
                    run.append(self.units[nxt])
                    follow += 1
            return run
        return []

    def _hedge_pick(self, lane: Lane, room: int) -> list[Unit]:
        """Duplicate the oldest single-copy assignment of another peer that runs late (the slow tail)."""
        now = time.monotonic()
        for job in sorted(self._live, key=lambda j: j.started):
            if job.lane is lane or job.hedge or now - job.started < self._late_after(job):
                continue
            units = [
                u for u in job.units
                if self._still_missing(u.index) and len(self.assigned.get(u.index, ())) <= 1
                and lane not in self.excluded.get(u.index, ()) and lane.may_send(u.index)
            ][:room]  # fmt: skip
            if units and (lane.mode == "raw" or len(units) == 1):
                if lane.mode == "raw" and any(b.index != a.index + 1 for a, b in zip(units, units[1:])):
                    units = units[:1]
                return units
            if units:
                return units[:1]
        return []

    def _late_after(self, job: Assignment) -> float:
        """Seconds after which an assignment is late: twice what its peer's rate predicts (a floor for the unmeasured)."""
        size = sum(u.end - u.start for u in job.units)
        rate = job.lane.rate
        expected = size / rate if rate else self.settings.hedge_after_s
        return max(2 * expected, self.settings.hedge_after_s)

    def _still_missing(self, index: int) -> bool:
        at = bisect.bisect_left(self.missing, index)
        return at < len(self.missing) and self.missing[at] == index

    def _mark_stalled(self) -> None:
        now = time.monotonic()
        for job in self._live:
            if not job.stalled and now - job.last_progress > self.settings.stall_s:
                job.stalled = True
                log.info("%s: no byte for %.1f s, its %d chunks go to other peers", job.lane.name,
                         now - job.last_progress, len(job.units))  # fmt: skip
                for unit in job.units:
                    if self._still_missing(unit.index):
                        self._unassign(unit.index, job)
                        self.refetched += 1

    # -- what workers report --------------------------------------------------------------

    def want(self, index: int) -> None:
        """Given a unit a reader waits for, hand out the units from it first."""
        with self.cond:
            self.cursor = index
            self.cond.notify_all()

    def progress(self, job: Assignment, count: int) -> None:
        job.last_progress = time.monotonic()
        job.received += count
        job.lane.sent += count

    def still_wanted(self, job: Assignment) -> bool:
        """True while some unit of the assignment is still missing (a hedge may have won)."""
        return any(self._still_missing(u.index) for u in job.units)

    def delivered(self, job: Assignment, unit: Unit) -> bool:
        """Given a proven unit written to the store, record it; return True if it was still missing."""
        with self.cond:
            at = bisect.bisect_left(self.missing, unit.index)
            new = at < len(self.missing) and self.missing[at] == unit.index
            if new:
                del self.missing[at]
                self.assigned.pop(unit.index, None)
                job.lane.delivered += 1
            if not self.missing:
                self.cond.notify_all()  # the fetch is over (budget is freed, and waiters woken, in finished_job)
            return new

    def refused(self, job: Assignment, unit: Unit, reason: str) -> None:
        """Given a unit that failed its proof (or size) from a peer, give it to another; drop repeat offenders."""
        with self.cond:
            lane = job.lane
            lane.bad.append(f"chunk {unit.index}: {reason}")
            job.refused = True
            self.excluded.setdefault(unit.index, set()).add(lane)
            self.refetched += 1
            if len(lane.bad) >= self.settings.max_bad and not lane.dropped:
                self._drop(lane, f"{len(lane.bad)} bad chunks: " + "; ".join(lane.bad[-3:]))
            self._check_alive(changed=(unit.index,))
            self.cond.notify_all()

    def not_held(self, job: Assignment, reason: str) -> None:
        """Given an assignment its peer answered "not held" for (a partial peer), give its units to
        others; the peer stays (it is not bad) unless it holds nothing it is asked for."""
        with self.cond:
            lane = job.lane
            lost = [u for u in job.units if self._still_missing(u.index)]
            for unit in lost:
                self.excluded.setdefault(unit.index, set()).add(lane)
            lane.lacked += len(lost)
            self.refetched += len(lost)
            if not lane.delivered and lane.lacked >= LACK_LIMIT and not lane.dropped:
                self._drop(lane, f"holds none of the {lane.lacked} chunks asked: {reason}")  # checks every unit
            self._check_alive(changed=[u.index for u in lost])
            self.cond.notify_all()

    def finished_job(self, job: Assignment, error: str | None = None, lacks: bool = False) -> None:
        """Given an assignment that ended (done, broken or refused), free its units and budget.

        ``lacks``: the peer does not have the object or is too slow for it: dropped at once.
        """
        with self.cond:
            lane = job.lane
            lane.in_flight -= len(job.units)
            self.in_flight -= len(job.units)
            if job in self._live:
                self._live.remove(job)
            for unit in job.units:
                self._unassign(unit.index, job)
            elapsed = max(time.monotonic() - job.started, 1e-3)
            if job.received and not job.refused:  # bad bytes earn no rate: the peer is retried, then dropped
                rate = job.received / elapsed
                lane.rate = rate if lane.rate is None else (1 - RATE_SMOOTHING) * lane.rate + RATE_SMOOTHING * rate
            if error is not None:
                lost = sum(1 for u in job.units if self._still_missing(u.index))
                self.refetched += lost
                if lacks and not lane.dropped:
                    self._drop(lane, f"not usable for this fetch: {error}")
                else:
                    lane.failures.append(error)
                    if len(lane.failures) >= self.settings.max_failures and not lane.dropped:
                        self._drop(lane, f"{len(lane.failures)} failed transfers: " + "; ".join(lane.failures[-3:]))
            self._check_alive()
            self.cond.notify_all()

    def _unassign(self, index: int, job: Assignment) -> None:
        jobs = self.assigned.get(index)
        if jobs and job in jobs:
            jobs.remove(job)
            if not jobs:
                del self.assigned[index]

    def _drop(self, lane: Lane, reason: str) -> None:
        lane.dropped = reason
        log.warning("peer %s dropped for this fetch: %s", lane.name, reason)
        self._check_alive(every_unit=True)

    def _check_alive(self, every_unit: bool = False, changed: list[int] | tuple[int, ...] = ()) -> None:
        """Fail the fetch when some missing unit has no peer left that may still send it.

        ``changed``: the units a peer just refused or lacked (only they can have lost their last
        peer); ``every_unit``: the peers changed (one dropped, the fetch starting), so check every
        unit some peer refused, and each missing unit against what partial peers hold.
        """
        if not self.missing or self.failed:
            return
        alive = [lane for lane in self.lanes if not lane.dropped]
        if not alive:
            reasons = "; ".join(f"{lane.name}: {lane.dropped}" for lane in self.lanes) or "no peers"
            self.failed = f"no peer left to fetch from ({reasons})"
            return
        refusals = self.excluded.items() if every_unit else ((i, self.excluded[i]) for i in changed if i in self.excluded)
        for index, refused_by in refusals:
            if self._still_missing(index) and not any(lane.may_send(index) for lane in alive if lane not in refused_by):
                self.failed = f"chunk {index}: no peer left holds a copy that passes its proof"
                return
        if every_unit and any(lane.holding is not None for lane in alive):
            for index in self.missing:
                if not any(lane.may_send(index) for lane in alive):
                    self.failed = f"chunk {index} is held by no peer left"
                    return

    def fail(self, reason: str) -> None:
        """Given a reason, end the fetch as failed (unless every unit is already in)."""
        with self.cond:
            if self.missing:
                self.failed = self.failed or reason
            self.cond.notify_all()
