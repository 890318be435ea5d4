"""The fetch scheduler fails a fetch, with the reason, as soon as some missing chunk has no peer
left that may send it (the last one refused it, lacked it, or was dropped), and not before: a
chunk one peer sent bad bytes for still comes from another. The scheduler checks only the units
that changed after each report, and every unit when a peer is dropped; these tests hold it to
the outcome either way."""

from __future__ import annotations

from permastore.sources.scheduler import ChunkScheduler, FetchSettings, Lane, Unit

CHUNK = 262144


def scheduler_over(*lanes: Lane, count: int = 4) -> ChunkScheduler:
    units = [Unit(i, i * CHUNK, (i + 1) * CHUNK) for i in range(count)]
    return ChunkScheduler(units, list(lanes), FetchSettings(hedge=False))


def refuse_next(scheduler: ChunkScheduler, lane: Lane) -> int:
    """The lane's next assignment (one chunk) comes back with bad bytes; return its index."""
    job = scheduler.next(lane, timeout=0)
    (unit,) = job.units
    scheduler.refused(job, unit, "proof failed")
    scheduler.finished_job(job)
    return unit.index


def test_a_chunk_refused_by_one_peer_comes_from_another_and_fails_once_the_last_refuses_it():
    a, b = Lane("a", "chunk"), Lane("b", "chunk")
    scheduler = scheduler_over(a, b)
    assert refuse_next(scheduler, a) == 0
    assert scheduler.failed is None  # b may still send chunk 0
    job = scheduler.next(b, timeout=0)
    assert [u.index for u in job.units] == [0]  # what a sent bad goes to b
    assert scheduler.delivered(job, job.units[0])
    scheduler.finished_job(job)
    assert refuse_next(scheduler, a) == 1
    assert refuse_next(scheduler, b) == 1  # the last peer that might have sent it
    assert scheduler.failed == "chunk 1: no peer left holds a copy that passes its proof"
    assert scheduler.next(a, timeout=0) is None and scheduler.next(b, timeout=0) is None  # over, not waiting


def test_dropping_the_last_peer_that_may_send_a_chunk_fails_the_fetch_with_the_reason():
    whole, part = Lane("whole", "chunk"), Lane("part", "chunk", holding=frozenset({0}))
    scheduler = scheduler_over(whole, part)
    assert refuse_next(scheduler, whole) == 0  # only `part` may send chunk 0 now
    assert scheduler.failed is None and not whole.dropped
    job = scheduler.next(part, timeout=0)
    assert [u.index for u in job.units] == [0]
    scheduler.finished_job(job, error="404: object not found", lacks=True)  # `part` is dropped
    assert part.dropped
    assert scheduler.failed == "chunk 0: no peer left holds a copy that passes its proof"


def test_a_peer_lacking_the_chunk_another_refused_fails_the_fetch():
    a, b = Lane("a", "chunk"), Lane("b", "chunk")
    scheduler = scheduler_over(a, b)
    assert refuse_next(scheduler, a) == 0
    job = scheduler.next(b, timeout=0)
    assert [u.index for u in job.units] == [0]
    scheduler.not_held(job, "404: not held")  # b stays in the fetch (it may hold the others)
    scheduler.finished_job(job)
    assert not b.dropped
    assert scheduler.failed == "chunk 0: no peer left holds a copy that passes its proof"
