"""Worker nodes altered for tests: `python -m tests.remote_workers.altered_worker MODE worker --head ...`.

Each runs the real `permastore worker` command with one change made here, in its own
process (no production flag or environment variable can do this; only this test module):
  skewed   every call's seed is shifted, so its tokens differ from any honest run
  stalling every call hangs before it runs (the test kills the worker mid-call)
  partial  every call streams some text, then hangs
  slow     every call waits SLOW_S before it runs (its lease lives on heartbeats alone)
"""

from __future__ import annotations

import dataclasses
import sys
import time

from inference.herder import remote_worker
from permastore.cli.main import main

honest_run = remote_worker.run_call


def skewed_run(call, engines, on_text):
    sampling = {**call.sampling, "seed": call.sampling["seed"] + 1}
    return honest_run(dataclasses.replace(call, sampling=sampling), engines, on_text)


def stalling_run(call, engines, on_text):
    time.sleep(3600)
    return honest_run(call, engines, on_text)


SLOW_S = 4.0


def slow_run(call, engines, on_text):
    time.sleep(SLOW_S)
    return honest_run(call, engines, on_text)


def partial_run(call, engines, on_text):
    on_text("partial ")
    time.sleep(3600)
    return honest_run(call, engines, on_text)


MODES = {"skewed": skewed_run, "stalling": stalling_run, "partial": partial_run, "slow": slow_run}

if __name__ == "__main__":
    remote_worker.run_call = MODES[sys.argv[1]]
    sys.exit(main(sys.argv[2:]))
