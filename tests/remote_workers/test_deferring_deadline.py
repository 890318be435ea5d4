"""A busy worker's lease request that leaves a call to an idle worker ends at its deadline: past
its wait it answers "no call" instead of taking the call from the queue again and again."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from inference.execution import execute_job
from inference.herder.calls import Call, CallQueue
from inference.herder.leases import WorkerRequest
from inference.herder.remote import RemoteHerd

SYNC_S = 30  # how long the test waits for its own threads to get somewhere (never reached when all is well)
RUNAWAY = 50  # takes by the busy worker's request past which the queue stops offering the call


class WatchedQueue(CallQueue):
    """The herder's queue, counting the busy worker's takes of a call. The idle worker's request
    (its thread named "idle-request") waits in get until released, as one waiting for a call
    does; after RUNAWAY takes the busy one gets nothing, so a request that loops still ends."""

    def __init__(self) -> None:
        super().__init__()
        self.taken = 0
        self.idle_waiting = threading.Event()
        self.release = threading.Event()

    def get(self, timeout: float | None = None) -> Call | None:
        if threading.current_thread().name == "idle-request":
            self.idle_waiting.set()
            self.release.wait(SYNC_S)
            return None
        if self.taken >= RUNAWAY:
            return None
        call = super().get(timeout)
        if call is not None:
            self.taken += 1
        return call


def test_a_deferring_busy_worker_stops_at_its_deadline(tmp_path):
    queue = WatchedQueue()
    pool = SimpleNamespace(queue=queue, config=SimpleNamespace(workers=1, call_timeout_s=60))
    service = SimpleNamespace(pool=pool, node_address="head", inference=SimpleNamespace(store=SimpleNamespace(root=tmp_path)))
    herd = RemoteHerd(service, allowed=["busy", "idle"], verify_fraction=0)
    idle_answer: list = []
    idle = threading.Thread(target=lambda: idle_answer.append(herd.lease(WorkerRequest("idle", {}), 20,
                                                                         gone=queue.release.is_set)),
                            name="idle-request", daemon=True)  # fmt: skip
    try:
        herd.leases.grant("busy", object(), 60)  # the busy worker runs a call
        queue.put(Call(execute_job, None))
        idle.start()
        assert queue.idle_waiting.wait(SYNC_S), "the idle worker's request never waited"
        # The busy worker asks with no time left to wait: the call is the idle one's, so no call.
        assert herd.lease(WorkerRequest("busy", {}), 0) is None
        assert queue.taken == 1  # took it once, put it back, and stopped: its deadline had passed
        assert len(queue) == 1  # the call is still there for the idle worker
    finally:
        queue.release.set()
        idle.join(SYNC_S)
        herd.close()
    assert idle_answer == [None]
