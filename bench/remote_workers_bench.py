"""Calls per second through a head with 2 remote worker nodes, against a head with 2 local workers.

Both set-ups run at once, each on its own copy of one data folder (same model, same ID),
and take turns: each round sends the same calls (prompts, concurrency) to the local head,
then to the remote one, so the noise of a shared machine falls on both alike.

  local   `permastore serve --workers 2`: calls run in the head's own worker processes
  remote  `permastore serve --workers 0 --allow-worker A --allow-worker B` and two
          `permastore worker --head URL` nodes (own data folders and wallets, the model
          fetched from the head): every call leased over HTTP, its Result signed by the worker
  ratio   remote / local calls per second, per round and of the medians; target >= 0.9
  cpu     CPU milliseconds per call (user + system, from /proc) of every process of each
          set-up: on a machine whose cores are all busy, calls per second follow it
  bound   the worker's Result signature (RSA-4096, timed here) is CPU the local path does
          not spend: local cpu / (local cpu + one signature) is the best ratio any remote
          protocol can reach on one machine whose cores are the limit
  memory  peak RSS (VmHWM) of each head, its worker processes, the worker nodes

    python bench/remote_workers_bench.py                         # the tiny fixture model
    python bench/remote_workers_bench.py --model PATH.gguf --tokens 32 --calls 40 --rounds 3

The tiny model makes a call a few milliseconds of compute, so the figure is mostly the
lease protocol's own cost; with a real model it is a smaller share. Writes
bench/out/remote_workers_bench.json (or --out) and prints a summary.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from ports import free_port
from proc_memory import memory_of, workers_of
from timing import cpu_seconds

REPO = Path(__file__).resolve().parents[1]
PERMASTORE = Path(sys.executable).parent / "permastore"
TINY = REPO / "fixtures" / "tiny-llama.gguf"
START_TIMEOUT_S = 120


def cli(*args: str) -> str:
    done = subprocess.run([str(PERMASTORE), *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"permastore {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def start_head(data: Path, log: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([str(PERMASTORE), "serve", "--data", str(data), "--port", str(port), "--quiet",
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


class SetUp:
    """One of the two set-ups: its head, the processes that run its calls, their peak RSS."""

    def __init__(self, name: str, head: subprocess.Popen, url: str, nodes: list[subprocess.Popen]):
        self.name, self.head, self.url, self.nodes = name, head, url, nodes
        self.peaks: dict[str, float] = {}

    def pids(self) -> dict[str, int]:
        if self.nodes:
            return {"head": self.head.pid, **{f"node{i}": p.pid for i, p in enumerate(self.nodes)}}
        return {"head": self.head.pid, **{f"worker{i}": pid for i, pid in enumerate(workers_of(self.head.pid))}}

    def sample_peaks(self) -> None:
        for name, pid in self.pids().items():
            try:
                peak = memory_of(pid)["peak_rss_mib"] or 0.0
            except OSError:
                continue
            self.peaks[name] = max(self.peaks.get(name, 0.0), round(peak, 1))

    def stop(self) -> None:
        self.sample_peaks()
        for node in self.nodes:
            stop(node)
        stop(self.head)


def load(setup: SetUp, model_id: str, calls: int, concurrency: int, tokens: int) -> dict:
    """Send `calls` completions from `concurrency` threads; return calls/s, latencies and CPU ms per call."""
    def one(n: int) -> float:
        started = time.perf_counter()
        answer = client.post("/v1/completions", json={"model": model_id, "prompt": f"bench call {n}",
                                                      "max_tokens": tokens, "temperature": 0.8})
        if answer.status_code != 200:
            raise SystemExit(f"{setup.name} call failed: {answer.status_code} {answer.text[:300]}")
        return time.perf_counter() - started

    with httpx.Client(base_url=setup.url, timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:
        for n in range(2 * concurrency):  # warm-up: models loaded everywhere, connections open
            one(-n)
        pids = setup.pids()
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            latencies = sorted(pool.map(one, range(calls)))
        wall = time.perf_counter() - started
        cpu = {name: round(1000 * (cpu_seconds(pid) - before[name]) / calls, 2) for name, pid in pids.items()}
    setup.sample_peaks()
    return {"calls": calls, "wall_s": round(wall, 3), "calls_per_s": round(calls / wall, 2),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p95_ms": round(1000 * latencies[int(len(latencies) * 0.95) - 1], 1),
            "cpu_ms_per_call": {**cpu, "total": round(sum(cpu.values()), 2)}}


def start_local(data: Path, tmp: Path) -> SetUp:
    head, url = start_head(data, tmp / "local.log", "--workers", "2")
    return SetUp("local", head, url, [])


def start_remote(data: Path, tmp: Path) -> SetUp:
    folders = [tmp / f"node{i}" for i in range(2)]
    addresses = [cli("init", "--data", str(folder)) for folder in folders]
    flags = [item for address in addresses for item in ("--allow-worker", address)]
    head, url = start_head(data, tmp / "remote.log", "--workers", "0", *flags)
    nodes = [subprocess.Popen([str(PERMASTORE), "worker", "--head", url, "--data", str(folder)],
                              stdout=open(tmp / f"{folder.name}.log", "wb"), stderr=subprocess.STDOUT)
             for folder in folders]
    return SetUp("remote", head, url, nodes)


def signature_ms(data: Path, rounds: int = 40) -> float:
    """Return the CPU milliseconds of one RSA-4096 record signature (a node wallet's), timed here."""
    from permastore.store import Store

    store = Store.open(data)
    try:
        signer, message = store.signer, os.urandom(48)
        signer.sign(message)
        started = time.process_time()
        for _ in range(rounds):
            signer.sign(message)
        return round(1000 * (time.process_time() - started) / rounds, 2)
    finally:
        store.close()


def summary(rounds: list[dict], sign_ms: float) -> dict:
    """Given each round's local and remote figures, return the medians, the ratios and the bound."""
    def median(kind: str, *path: str) -> float:
        values = []
        for one in rounds:
            value = one[kind]
            for key in path:
                value = value[key]
            values.append(value)
        return round(statistics.median(values), 2)

    local_cpu, remote_cpu = median("local", "cpu_ms_per_call", "total"), median("remote", "cpu_ms_per_call", "total")
    local, remote = median("local", "calls_per_s"), median("remote", "calls_per_s")
    return {"local_calls_per_s": local, "remote_calls_per_s": remote,
            "ratio_of_medians": round(remote / local, 3),
            "ratio_per_round": [round(r["remote"]["calls_per_s"] / r["local"]["calls_per_s"], 3) for r in rounds],
            "cpu_ms_per_call": {"local": local_cpu, "remote": remote_cpu,
                                "local_head": median("local", "cpu_ms_per_call", "head"),
                                "remote_head": median("remote", "cpu_ms_per_call", "head"),
                                "cpu_ratio_local_over_remote": round(local_cpu / remote_cpu, 3)},
            "worker_result_signature_ms": sign_ms,
            "signature_bound_ratio": round(local_cpu / (local_cpu + sign_ms), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=TINY, help="GGUF file (default: the tiny fixture model)")
    parser.add_argument("--calls", type=int, default=200, help="calls per round and set-up")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "remote_workers_bench.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="remote-workers-bench-") as folder:
        tmp = Path(folder)
        model_id = cli("model", "add", str(args.model), "--data", str(tmp / "local-head"))
        shutil.copytree(tmp / "local-head", tmp / "remote-head")  # same model, same ID, no lock shared
        cli("init", "--data", str(tmp / "node-sign"))  # a wallet like a worker node's
        sign_ms = signature_ms(tmp / "node-sign")
        setups = [start_local(tmp / "local-head", tmp), start_remote(tmp / "remote-head", tmp)]
        try:
            rounds = []
            for number in range(args.rounds):
                one = {s.name: load(s, model_id, args.calls, args.concurrency, args.tokens) for s in setups}
                print(f"round {number + 1}: local {one['local']['calls_per_s']} calls/s, remote "
                      f"{one['remote']['calls_per_s']} calls/s", flush=True)
                rounds.append(one)
            info = httpx.get(f"{setups[1].url}/herder/info", timeout=30).json()
        finally:
            for setup in setups:
                setup.stop()
    report = {"model": str(args.model), "tokens": args.tokens, "concurrency": args.concurrency,
              "calls_per_round": args.calls, "rounds": rounds, "summary": summary(rounds, sign_ms),
              "remote_calls_per_node": [w["calls_done"] for w in info["remote_workers"]],
              "leases_expired": info["leases"]["expired"],
              "peak_rss_mib": {s.name: s.peaks for s in setups}, "target": ">= 0.9"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("summary", "peak_rss_mib", "remote_calls_per_node", "leases_expired")},
                     indent=2))
    figures = report["summary"]
    print(f"calls/s (medians of {args.rounds} rounds): local {figures['local_calls_per_s']}, remote "
          f"{figures['remote_calls_per_s']}: ratio {figures['ratio_of_medians']} (target >= 0.9); "
          f"CPU ms per call local {figures['cpu_ms_per_call']['local']}, remote {figures['cpu_ms_per_call']['remote']}; "
          f"signature bound {figures['signature_bound_ratio']}")


if __name__ == "__main__":
    main()
