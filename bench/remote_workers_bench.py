"""Calls per second through a head with 2 remote worker nodes, against the same head with 2 local workers.

In one run, on one data folder (the head's), with the same model, prompts and concurrency:

  local   `permastore serve --workers 2`: calls run in the head's own worker processes
  remote  `permastore serve --workers 0 --allow-worker A --allow-worker B` and two
          `permastore worker --head URL` nodes (own data folders and wallets, the model
          fetched from the head): every call leased over HTTP, its Result signed by the worker
  ratio   remote / local calls per second; target >= 0.9
  memory  peak RSS (VmHWM) of the head, its worker processes, the worker nodes

    python bench/remote_workers_bench.py                         # the tiny fixture model
    python bench/remote_workers_bench.py --model PATH.gguf --tokens 32 --calls 40

The tiny model makes a call a few milliseconds of compute, so the figure is mostly the
lease protocol's own cost; with a real model it is a smaller share. Writes
bench/out/remote_workers_bench.json (or --out) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from proc_memory import memory_of, workers_of

REPO = Path(__file__).resolve().parents[1]
PERMASTORE = Path(sys.executable).parent / "permastore"
TINY = REPO / "fixtures" / "tiny-llama.gguf"
START_TIMEOUT_S = 120


def cli(*args: str) -> str:
    done = subprocess.run([str(PERMASTORE), *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"permastore {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_head(data: Path, log: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([str(PERMASTORE), "serve", "--data", str(data), "--port", str(port),
                                "--mine-interval", "0", "--verify-fraction", "0", *flags],
                               stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/herder/info", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"head did not start: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class PeakWatch:
    """Samples the peak RSS (VmHWM) of a set of processes until stopped (a process's own high-water mark)."""

    def __init__(self, pids_of):
        self.pids_of = pids_of
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PeakWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(0.5):
                self.sample()
                return

    def sample(self) -> None:
        for name, pid in self.pids_of().items():
            try:
                peak = memory_of(pid)["peak_rss_mib"] or 0.0
            except OSError:
                continue
            self.peaks[name] = max(self.peaks.get(name, 0.0), peak)


def load(url: str, model_id: str, calls: int, concurrency: int, tokens: int) -> dict:
    """Send `calls` completions from `concurrency` threads; return calls/s and latencies."""
    def one(n: int) -> float:
        started = time.perf_counter()
        answer = client.post("/v1/completions", json={"model": model_id, "prompt": f"bench call {n}",
                                                      "max_tokens": tokens, "temperature": 0.8})
        if answer.status_code != 200:
            raise SystemExit(f"call failed: {answer.status_code} {answer.text[:300]}")
        return time.perf_counter() - started

    with httpx.Client(base_url=url, timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        for n in range(2 * concurrency):  # warm-up: models loaded everywhere, connections open
            one(-n)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = sorted(pool.map(one, range(calls)))
        wall = time.perf_counter() - started
    return {"calls": calls, "wall_s": round(wall, 3), "calls_per_s": round(calls / wall, 2),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95) - 1], 1)}


def run_local(data: Path, tmp: Path, model_id: str, args) -> dict:
    head, url = start_head(data, tmp / "local.log", "--workers", "2")
    try:
        with PeakWatch(lambda: {"head": head.pid, **{f"worker{i}": pid for i, pid in
                                                     enumerate(workers_of(head.pid))}}) as watch:
            figures = load(url, model_id, args.calls, args.concurrency, args.tokens)
        return {**figures, "peak_rss_mib": {k: round(v, 1) for k, v in watch.peaks.items()}}
    finally:
        stop(head)


def run_remote(data: Path, tmp: Path, model_id: str, args) -> dict:
    folders = [tmp / f"node{i}" for i in range(2)]
    addresses = [cli("init", "--data", str(folder)) for folder in folders]
    flags = [item for address in addresses for item in ("--allow-worker", address)]
    head, url = start_head(data, tmp / "remote.log", "--workers", "0", *flags)
    nodes = [subprocess.Popen([str(PERMASTORE), "worker", "--head", url, "--data", str(folder)],
                              stdout=open(tmp / f"{folder.name}.log", "wb"), stderr=subprocess.STDOUT)
             for folder in folders]
    try:
        with PeakWatch(lambda: {"head": head.pid, **{f"node{i}": p.pid for i, p in enumerate(nodes)}}) as watch:
            figures = load(url, model_id, args.calls, args.concurrency, args.tokens)
        info = httpx.get(f"{url}/herder/info", timeout=30).json()
        done = [w["calls_done"] for w in info["remote_workers"]]
        return {**figures, "calls_per_node": done, "leases_expired": info["leases"]["expired"],
                "peak_rss_mib": {k: round(v, 1) for k, v in watch.peaks.items()}}
    finally:
        for node in nodes:
            stop(node)
        stop(head)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=TINY, help="GGUF file (default: the tiny fixture model)")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "remote_workers_bench.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remote-workers-bench-") as folder:
        tmp = Path(folder)
        data = tmp / "head"
        model_id = cli("model", "add", str(args.model), "--data", str(data))
        local = run_local(data, tmp, model_id, args)
        remote = run_remote(data, tmp, model_id, args)
    ratio = remote["calls_per_s"] / local["calls_per_s"]
    report = {"model": str(args.model), "tokens": args.tokens, "concurrency": args.concurrency,
              "local_2_workers": local, "remote_2_nodes": remote, "ratio_remote_over_local": round(ratio, 3),
              "target": ">= 0.9"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"calls/s: local {local['calls_per_s']}, remote {remote['calls_per_s']}: ratio {ratio:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
