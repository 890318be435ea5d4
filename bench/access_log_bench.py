"""Access log cost: `permastore serve` logging every request (stderr to a file) against `serve --quiet`.

Two servers over copies of one data folder, side by side, rounds alternating; wrk with
keep-alive over 1 KiB objects:
  1. plain GET /{id} of cached objects (answered by the httptools protocol itself: the hot path);
  2. GET /{id} with a Range header (every request through the app and its middleware).
Reports median req/s, p99 and server CPU microseconds per request (steadier than req/s on a
shared machine), the ratios logged/quiet per workload, the access log lines
written, and each server's peak RSS. Needs wrk (apt-get install wrk).

    python bench/access_log_bench.py --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_bench import peak_rss_kib, wait_for_line, wrk  # noqa: E402

RANGE_WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1], {["Range"] = "bytes=10-99"})
end
"""


def start(data_dir: Path, out: Path, err: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "gateway", "serve", "--data", str(data_dir), "--port", "0",
               "--mine-interval", "0", *extra]
    process = subprocess.Popen(command, stdout=open(out, "wb"), stderr=open(err, "wb"))
    url = wait_for_line(process, out, lambda line: line.split("listening on ", 1)[1].strip() if "listening on " in line else None)
    return process, url


def wrk_with_range(url: str, paths: list[str], workdir: Path, duration: int, concurrency: int) -> dict:
    """Like gateway_bench.wrk, each request carrying a Range header (so the app answers it)."""
    script = workdir / "range.lua"
    script.write_text(RANGE_WRK_SCRIPT)
    paths_file = workdir / "range-paths.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    out = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env={**os.environ, "BENCH_PATHS": str(paths_file)}, check=True,
    ).stdout
    import re

    result = {"req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    match = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if match:
        value, unit = float(match.group(1)), match.group(2)
        result["p99_ms"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return result


def cpu_seconds(pid: int) -> float:
    """Given a process ID, return the CPU time (user + system) its threads have used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(run, pid: int, duration: int) -> dict:
    """Given a wrk run and the server's PID, return its figures plus the server's CPU microseconds per request.

    CPU per request holds up on a shared machine where req/s swings with the neighbours' load.
    """
    before = cpu_seconds(pid)
    result = run()
    requests = result["req_per_s"] * duration
    result["cpu_us_per_request"] = (cpu_seconds(pid) - before) / requests * 1e6 if requests else 0.0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-count", type=int, default=200)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("needs wrk (apt-get install wrk)")
    from permastore.store import Store

    root = Path(tempfile.mkdtemp(prefix="access-log-bench-"))
    try:
        store = Store.open(root / "logged")
        try:
            ids = [store.put_data(os.urandom(1024), content_type="application/octet-stream").id
                   for _ in range(args.small_count)]
        finally:
            store.close()
        shutil.copytree(root / "logged", root / "quiet")
        servers = {
            "logged": start(root / "logged", root / "logged.out", root / "logged.err"),
            "quiet": start(root / "quiet", root / "quiet.out", root / "quiet.err", "--quiet"),
        }
        paths = [f"/{object_id}" for object_id in ids]
        for _, url in servers.values():  # the first full-route read fills each server's small-object cache
            with httpx.Client(base_url=url) as http:
                for path in paths:
                    http.get(path).raise_for_status()
        samples = {name: {"cached": [], "range": []} for name in servers}
        for _ in range(args.rounds):
            for name, (process, url) in servers.items():
                samples[name]["cached"].append(measured(
                    lambda url=url: wrk(url, paths, root, args.duration, args.concurrency, 2), process.pid, args.duration))
                samples[name]["range"].append(measured(
                    lambda url=url: wrk_with_range(url, paths, root, args.duration, args.concurrency), process.pid, args.duration))
        rss = {name: peak_rss_kib([process.pid]) for name, (process, _) in servers.items()}
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
        summary = {}
        for workload in ("cached", "range"):
            medians = {name: {key: round(statistics.median(s.get(key, 0) for s in samples[name][workload]), 3)
                              for key in ("req_per_s", "p99_ms", "cpu_us_per_request")}
                       for name in servers}
            summary[workload] = {
                **medians,
                "ratio_logged_vs_quiet": round(medians["logged"]["req_per_s"] / medians["quiet"]["req_per_s"], 3),
                "cpu_ratio_logged_vs_quiet": round(
                    medians["logged"]["cpu_us_per_request"] / medians["quiet"]["cpu_us_per_request"], 3),
            }
        summary["access_log_lines_written"] = sum(1 for line in (root / "logged.err").open(errors="replace")
                                                  if '" 20' in line)
        summary["quiet_lines_written"] = sum(1 for line in (root / "quiet.err").open(errors="replace") if '" 20' in line)
        summary["peak_rss_kib"] = rss
        summary["stopped_lines"] = [(root / f"{name}.err").read_text(errors="replace").strip().splitlines()[-1]
                                    for name in servers]
        print(json.dumps(summary, indent=2))
    finally:
        time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
