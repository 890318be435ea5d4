"""The herder's worker processes: dispatch, streaming, death, hangs, retries."""

import os
import signal
import time
from concurrent.futures import Future

import pytest

from inference.errors import CallFailed, CallTimeout, WorkerLost
from inference.herder.pool import PoolConfig, WorkerPool
from tests.inference import herder_jobs as jobs


def _herder(**settings) -> WorkerPool:
    herder = WorkerPool(PoolConfig(**settings)).start()
    assert herder.wait_ready(60), "workers did not start"
    return herder


def _wait_running(call, timeout=30.0) -> int:
    deadline = time.monotonic() + timeout
    while call.worker_pid is None:
        assert time.monotonic() < deadline, "call never started"
        time.sleep(0.01)
    return call.worker_pid


@pytest.fixture
def herder():
    herder = _herder(workers=2, call_timeout_s=20)
    yield herder
    herder.close()


def test_calls_run_in_separate_worker_processes(herder):
    results = [herder.submit(jobs.echo, i) for i in range(6)]
    outputs = [call.wait(30) for call in results]
    assert [o["payload"] for o in outputs] == list(range(6))
    pids = {o["pid"] for o in outputs}
    assert os.getpid() not in pids
    assert pids <= set(herder.worker_pids())


def test_events_stream_back_in_order(herder):
    call = herder.submit(jobs.stream, 50)
    outcomes = list(call.results(30))
    assert outcomes[:-1] == [("event", i) for i in range(50)]
    assert outcomes[-1] == ("done", 50)


def test_a_failing_job_is_reported_and_the_worker_lives(herder):
    pids = herder.worker_pids()
    with pytest.raises(CallFailed, match="bad input 'x'"):
        herder.run(jobs.explode, "x")
    assert herder.run(jobs.echo, 1)["payload"] == 1
    assert sorted(herder.worker_pids()) == sorted(pids)
    assert herder.restarts == 0


def test_a_killed_worker_is_replaced_and_its_call_retried(herder):
    call = herder.submit(jobs.slow, 1.0)
    victim = _wait_running(call)
    os.kill(victim, signal.SIGKILL)
    result = call.wait(60)
    assert result["pid"] != victim
    assert call.attempts == 2
    assert victim not in herder.worker_pids()
    assert herder.wait_ready(60)
    assert herder.info()["worker_restarts"] >= 1


def test_a_call_whose_worker_dies_twice_gets_an_error_answer():
    herder = _herder(workers=1, call_timeout_s=20, retries=1)
    try:
        call = herder.submit(jobs.slow, 5.0)
        os.kill(_wait_running(call), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while call.attempts < 2 or call.worker_pid is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(call.worker_pid, signal.SIGKILL)
        with pytest.raises(WorkerLost):
            call.wait(60)
        assert herder.run(jobs.echo, "after")["payload"] == "after"
    finally:
        herder.close()


def test_a_hung_worker_hits_the_timeout_and_is_replaced():
    herder = _herder(workers=1, call_timeout_s=1.5, retries=0)
    try:
        call = herder.submit(jobs.slow, 0.5)
        victim = _wait_running(call)
        os.kill(victim, signal.SIGSTOP)  # hung: alive, never answers
        started = time.monotonic()
        with pytest.raises(CallTimeout, match="timed out after 1.5 s"):
            call.wait(30)
        assert time.monotonic() - started < 10
        assert herder.run(jobs.echo, "next")["pid"] != victim
    finally:
        herder.close()


def test_a_hung_worker_is_retried_on_a_fresh_one():
    herder = _herder(workers=1, call_timeout_s=2, retries=1)
    try:
        call = herder.submit(jobs.slow, 0.5)
        victim = _wait_running(call)
        os.kill(victim, signal.SIGSTOP)
        result = call.wait(60)
        assert result["pid"] != victim and call.attempts == 2
    finally:
        herder.close()


def test_a_streamed_call_is_not_silently_retried_after_output_was_sent():
    herder = _herder(workers=1, call_timeout_s=20, retries=1)
    try:
        call = herder.submit(jobs.stream_then_sleep, 5.0)
        outcomes = call.results(30)
        assert next(outcomes) == ("event", "first")
        os.kill(call.worker_pid, signal.SIGKILL)
        kind, error = next(outcomes)
        assert kind == "error" and isinstance(error, WorkerLost)
        assert call.attempts == 1
    finally:
        herder.close()


def test_closing_answers_waiting_calls():
    herder = _herder(workers=1, call_timeout_s=20)
    running = herder.submit(jobs.slow, 0.5)
    waiting = herder.submit(jobs.echo, "late")
    _wait_running(running)
    herder.close()
    assert running.wait(5)["slept"] == 0.5
    with pytest.raises(Exception, match="shutting down"):
        waiting.wait(5)


def test_every_worker_and_every_replacement_runs_the_warm_ups():
    herder = _herder(workers=2, call_timeout_s=20)
    try:
        herder.warm(jobs.remember, "model-a")
        deadline = time.monotonic() + 30
        while True:
            seen = [herder.run(jobs.remembered, None) for _ in range(6)]
            pids = {pid for pid, _ in seen}
            if len(pids) == 2 or time.monotonic() > deadline:
                break
        assert all(memory == ["model-a"] for _, memory in seen)  # warmed once, before any call
        victim = seen[0][0]
        os.kill(victim, signal.SIGKILL)
        assert herder.wait_ready(60)
        after = [herder.run(jobs.remembered, None) for _ in range(6)]
        assert all(memory == ["model-a"] for _, memory in after)
        assert victim not in {pid for pid, _ in after}
    finally:
        herder.close()


def test_closing_kills_a_hung_call_after_the_grace_period_and_answers_it():
    herder = _herder(workers=1, call_timeout_s=300)
    call = herder.submit(jobs.slow, 0.5)
    victim = _wait_running(call)
    os.kill(victim, signal.SIGSTOP)
    started = time.monotonic()
    herder.close(grace_s=0.5)
    assert time.monotonic() - started < 20
    with pytest.raises(WorkerLost):
        call.wait(5)
    assert not os.path.exists(f"/proc/{victim}") or "Z" in open(f"/proc/{victim}/stat").read().split()[2]


def test_a_warm_up_that_kills_workers_is_dropped_and_calls_still_run():
    herder = _herder(workers=1, call_timeout_s=20)
    try:
        herder.warm(jobs.die, None)
        assert herder.run(jobs.echo, "served")["payload"] == "served"
        assert herder.restarts >= 1
    finally:
        herder.close()


def test_calls_are_answered_when_no_worker_can_start():
    # A start timeout no worker can meet stands in for a machine that cannot run workers.
    herder = WorkerPool(PoolConfig(workers=1, call_timeout_s=20, worker_start_timeout_s=0.001)).start()
    try:
        with pytest.raises(WorkerLost, match="no worker process could be started"):
            herder.run(jobs.echo, "never")
    finally:
        herder.close()


def test_a_job_gets_its_late_value_while_running(herder):
    value: Future = Future()
    call = herder.submit(jobs.late, None, late=value)
    outcomes = call.results(timeout=30)
    assert next(outcomes) == ("event", "started")  # running before the value exists
    value.set_result("message-id")
    kind, result = next(outcomes)
    assert kind == "done" and result["late"] == "message-id"
    # The worker serves the next call normally (a late value never confuses its loop).
    assert herder.submit(jobs.echo, 1).wait(30)["payload"] == 1


def test_a_failed_late_value_fails_the_job(herder):
    value: Future = Future()
    call = herder.submit(jobs.late, None, late=value)
    value.set_exception(ValueError("could not sign"))
    with pytest.raises(CallFailed, match="could not sign"):
        call.wait(30)


def test_a_retried_job_gets_the_late_value_again(herder, tmp_path):
    value: Future = Future()
    value.set_result("again")
    call = herder.submit(jobs.die_then_late, str(tmp_path / "died-once"), late=value)
    assert call.wait(60) == {"late": "again"}
    assert call.attempts == 2
