"""A worker that already runs a call leaves the next one to a worker that runs none."""

from __future__ import annotations

import threading

from tests.remote_workers.conftest import worker_named


def test_a_busy_worker_leaves_calls_to_an_idle_one(herd):
    busy, idle = herd.wallet("busy"), herd.wallet("idle")
    herd.start_head("--workers", "0", "--allow-worker", busy, "--allow-worker", idle, "--verify-fraction", "0")
    herd.start_worker("busy", mode="slow")  # its calls wait 4 s before they run; its second slot waits for another
    herd.wait_for(lambda i: worker_named(i, busy) is not None, "the busy worker asking for calls")
    answers = []
    first = threading.Thread(target=lambda: answers.append(herd.complete("long one")), daemon=True)
    first.start()
    herd.wait_for(lambda i: any(h["worker"] == busy for h in i["leases"]["held"]), "the busy worker holding the call")
    herd.start_worker("idle")
    herd.wait_for(lambda i: worker_named(i, idle) is not None, "the idle worker asking for calls")
    for n in range(4):  # each could go to the busy worker's waiting slot, behind its running call
        answer = herd.complete(f"short {n}")
        assert answer.status_code == 200, answer.text
    first.join(120)
    assert answers and answers[0].status_code == 200, answers
    info = herd.info()
    assert worker_named(info, idle)["calls_done"] == 4
    assert worker_named(info, busy)["calls_done"] == 1
