"""Timing a benchmark's child process: wall seconds, CPU seconds and peak RSS from wait4."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path


def run_measured(command: list, env: dict | None = None) -> dict:
    """Given a command, run it to the end; return wall_s, cpu_s, peak_rss_mib, rc, stdout and stderr.

    Output goes to temporary files, not pipes, so a chatty child never blocks and no reader
    thread competes with it for the CPU.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        return {
            "wall_s": round(wall, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "rc": os.waitstatus_to_exitcode(status),
            "stdout": out.read().decode(errors="replace").strip(), "stderr": err.read().decode(errors="replace"),
        }  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (a server the benchmark started), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
