"""Small jobs run inside real herder worker processes by the pool tests."""

import os
import time


def echo(payload, emit):
    """Return the payload and the worker's pid."""
    return {"payload": payload, "pid": os.getpid()}


def stream(payload, emit):
    """Emit `payload` numbered events, then return their count."""
    for i in range(payload):
        emit(i)
    return payload


def slow(payload, emit):
    """Sleep `payload` seconds (long enough to kill the worker mid-call), then return."""
    time.sleep(payload)
    return {"slept": payload, "pid": os.getpid()}


def explode(payload, emit):
    """Raise, as a job fed bad input does."""
    raise ValueError(f"bad input {payload!r}")


def stream_then_sleep(payload, emit):
    """Emit one event, then sleep `payload` seconds."""
    emit("first")
    time.sleep(payload)
    return "finished"


_memory: list = []


def remember(payload, emit):
    """A warm-up job: remember the payload in this worker."""
    _memory.append(payload)


def remembered(payload, emit):
    """Return this worker's pid and what its warm-ups left."""
    return os.getpid(), list(_memory)


def die(payload, emit):
    """Kill this worker outright, as a model that crashes llama.cpp on load would."""
    os._exit(1)


def late(payload, emit):
    """Emit 'started', then wait for the call's late value and return it with the worker's pid."""
    from inference.herder import late_value

    emit("started")
    return {"late": late_value(), "pid": os.getpid()}


def die_then_late(payload, emit):
    """On the first attempt (no marker file yet) die hard; on the retry, return the late value."""
    from inference.herder import late_value

    if not os.path.exists(payload):
        open(payload, "w").close()
        os._exit(9)
    return {"late": late_value()}
