"""Small jobs run inside real herder worker processes by the pool tests."""

import os
import time


def echo(payload, job):
    """Return the payload and the worker's pid."""
    return {"payload": payload, "pid": os.getpid()}


def stream(payload, job):
    """Emit `payload` numbered events, then return their count."""
    for i in range(payload):
        job.emit(i)
    return payload


def slow(payload, job):
    """Sleep `payload` seconds (long enough to kill the worker mid-call), then return."""
    time.sleep(payload)
    return {"slept": payload, "pid": os.getpid()}


def explode(payload, job):
    """Raise, as a job fed bad input does."""
    raise ValueError(f"bad input {payload!r}")


def stream_then_sleep(payload, job):
    """Emit one event, then sleep `payload` seconds."""
    job.emit("first")
    time.sleep(payload)
    return "finished"


_memory: list = []


def remember(payload, job):
    """A warm-up job: remember the payload in this worker."""
    _memory.append(payload)


def remembered(payload, job):
    """Return this worker's pid and what its warm-ups left."""
    return os.getpid(), list(_memory)


def die(payload, job):
    """Kill this worker outright, as a model that crashes llama.cpp on load would."""
    os._exit(1)


def late(payload, job):
    """Emit 'started', then wait for the call's late value and return it with the worker's pid."""
    job.emit("started")
    return {"late": job.late_value(), "pid": os.getpid()}


def die_then_late(payload, job):
    """On the first attempt (no marker file yet) die hard; on the retry, return the late value."""
    if not os.path.exists(payload):
        open(payload, "w").close()
        os._exit(9)
    return {"late": job.late_value()}
