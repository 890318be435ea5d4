"""A worker node whose engine output differs (test-only): `python -m tests.remote_workers.skewed_worker worker ...`.

It runs the real `permastore worker` command with one change made here, in its own
process: every call's seed is shifted, so its tokens differ from any honest run. No
production flag or environment variable can do this; only this test module does.
"""

from __future__ import annotations

import dataclasses
import sys

from inference.herder import remote_worker
from permastore.cli.main import main

honest_run = remote_worker.run_call


def skewed_run(call, engines, on_text):
    sampling = {**call.sampling, "seed": call.sampling["seed"] + 1}
    return honest_run(dataclasses.replace(call, sampling=sampling), engines, on_text)


if __name__ == "__main__":
    remote_worker.run_call = skewed_run
    sys.exit(main(sys.argv[1:]))
