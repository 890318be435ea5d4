"""Tokens per second through `permastore serve` against llama-cpp-python on the same file, interleaved.

Part of bench/inference_bench.py. On a machine shared with other work the speed of a run
depends on what else runs at that moment, so the two sides are measured in rounds: each
round runs the direct baseline and the server's calls back to back (the order alternating),
with the same prompt, seed, sampling, n_batch/n_ubatch, n_threads and context (the
server's default process settings, loaded through the same `llama_params`). Both sides
are warmed first (model loaded, a call run). Reported: per-side median, min, max and
spread, the ratio of medians and the median of the per-round ratios (each round's pair
saw about the same machine), and for every run the CPU the rest of the machine used
meanwhile (/proc/stat: busy time not spent by the bench's processes, steal, load).

On a machine whose other work takes most of its CPUs, wall-clock tokens/s says more about
the scheduler's share than about either side. So each run also counts the CPU time its
side used (/proc/<pid>/stat): tokens per CPU-second of the direct process, of the herder
worker alone, and of worker + server together. Those ratios do not depend on the
neighbours; on an idle machine, where the generating thread has a CPU to itself and the
server's own work runs beside it, wall tokens/s of each side approaches its worker's (or
the direct process's) tokens per CPU-second.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from inference_children import PROMPT, SEED
from proc_memory import workers_of

HZ = os.sysconf("SC_CLK_TCK")
SAMPLING = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "repeat_penalty": 1.0}


# ---------------------------------------------------------------------------- machine load


def machine_ticks() -> tuple[int, int, int]:
    """Return (busy, steal, total) clock ticks of all CPUs since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + idle + iowait + steal


def os_threads(pid: int) -> int | None:
    """Return how many OS threads a process has (llama.cpp's compute threads among them)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def process_ticks(pids: list[int]) -> int:
    """Return the user + system ticks the given processes have used (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


@dataclass
class LoadProbe:
    """What the machine did during one measured run: CPU seconds of each group of the bench's
    processes ({"direct": [pid], "worker": [...], "server": [...]}) and of everything else."""

    groups: dict[str, list[int]]

    def __enter__(self) -> LoadProbe:
        self._machine = machine_ticks()
        self._ours = {name: process_ticks(pids) for name, pids in self.groups.items()}
        self._wall = time.monotonic()
        return self

    def __exit__(self, *_exc) -> None:
        busy0, steal0, total0 = self._machine
        busy1, steal1, total1 = machine_ticks()
        seconds = max(time.monotonic() - self._wall, 1e-9)
        ours = {name: process_ticks(pids) - self._ours[name] for name, pids in self.groups.items()}
        self.figures = {
            **{f"{name}_cpu_s": ticks / HZ for name, ticks in ours.items()},
            "others_cpu_cores": max(0, (busy1 - busy0) - sum(ours.values())) / HZ / seconds,
            "steal_fraction": (steal1 - steal0) / max(1, total1 - total0),
            "load1": os.getloadavg()[0],
        }


# ---------------------------------------------------------------------------- the two sides


class DirectLlama:
    """llama-cpp-python in its own process, loaded once, running completions on request."""

    def __init__(self, model: Path, settings: dict):
        child = Path(__file__).with_name("inference_children.py")
        self.process = subprocess.Popen([sys.executable, str(child), "tps-serve", str(model), json.dumps(settings)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = self._reply()  # loaded and warmed

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the direct llama-cpp-python child exited")
        return json.loads(line)

    def run(self, seed: int, tokens: int) -> dict:
        self.process.stdin.write(json.dumps({"seed": seed, "max_tokens": tokens, **SAMPLING}) + "\n")
        return self._reply()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(60)


def http_run(client, model_id: str, seed: int, tokens: int, stream: bool) -> dict:  # noqa: ANN001
    """One /v1/completions call; return its completion tokens and wall time."""
    body = {"model": model_id, "prompt": PROMPT, "max_tokens": tokens, "seed": seed, **SAMPLING}
    started = time.perf_counter()
    if not stream:
        reply = client.post("/v1/completions", json=body)
        wall = time.perf_counter() - started
        reply.raise_for_status()
        return {"tokens": reply.json()["usage"]["completion_tokens"], "wall_s": wall}
    usage = None
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                usage = chunk.get("usage") or usage
    wall = time.perf_counter() - started
    return {"tokens": usage["completion_tokens"] if usage else None, "wall_s": wall}


# ---------------------------------------------------------------------------- rounds


def spread(values: list[float]) -> dict:
    """Given per-run figures, return their median, min, max and relative spread ((max-min)/median)."""
    mid = statistics.median(values)
    return {"median": mid, "min": min(values), "max": max(values),
            "spread": (max(values) - min(values)) / mid if mid else None, "runs": len(values)}


def measure_rounds(direct: DirectLlama, client, model_id: str, server_pid: int,  # noqa: ANN001
                   tokens: int, rounds: int) -> dict:
    """Run `rounds` interleaved rounds; return every run and the figures compared."""
    sides = ("direct", "http", "http_stream", "direct_1", "http_1")
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    groups = {"direct": [direct.process.pid], "worker": workers_of(server_pid), "server": [server_pid]}
    for i in range(rounds):
        seed = SEED + i
        order = sides if i % 2 == 0 else tuple(reversed(sides))
        for side in order:
            with LoadProbe(groups) as probe:
                count = 1 if side.endswith("_1") else tokens
                if side.startswith("direct"):
                    run = direct.run(seed, count)
                else:
                    run = http_run(client, model_id, seed, count, stream=side == "http_stream")
            runs[side].append({**run, "tps": run["tokens"] / run["wall_s"], "round": i, **probe.figures})
    return summarise(runs)


def per_cpu_second(run: dict, group: str) -> float:
    """Return a run's tokens per CPU-second of one group of processes ("worker+server": both)."""
    used = sum(run[f"{name}_cpu_s"] for name in group.split("+"))
    return run["tokens"] / used if used > 0 else float("nan")


def cpu_efficiency(runs: dict[str, list[dict]]) -> dict:
    """Tokens per CPU-second of each side, and the HTTP sides' ratios to the direct one."""
    direct = spread([per_cpu_second(r, "direct") for r in runs["direct"]])
    report: dict = {"direct": direct}
    for side in ("http", "http_stream"):
        for group in ("worker", "worker+server"):
            figures = spread([per_cpu_second(r, group) for r in runs[side]])
            report[f"{side}_{group}"] = {**figures, "ratio": figures["median"] / direct["median"]}
    return report


def summarise(runs: dict[str, list[dict]]) -> dict:
    direct_tps = [r["tps"] for r in runs["direct"]]
    report: dict = {"runs": runs}
    for side in ("direct", "http", "http_stream"):
        report[side] = spread([r["tps"] for r in runs[side]])
    one = [(h["wall_s"] - d["wall_s"]) * 1000 for h, d in zip(runs["http_1"], runs["direct_1"], strict=True)]
    report["call_overhead_ms"] = {**spread(one), "direct_1_token_ms": statistics.median(
        r["wall_s"] * 1000 for r in runs["direct_1"])}
    for side in ("http", "http_stream"):
        pairs = [h["tps"] / d for h, d in zip((r for r in runs[side]), direct_tps, strict=True)]
        report[f"{side}_ratio_of_medians"] = report[side]["median"] / report["direct"]["median"]
        report[f"{side}_paired_ratio"] = spread(pairs)
    report["tokens_per_cpu_s"] = cpu_efficiency(runs)
    every = [r for side in ("direct", "http", "http_stream") for r in runs[side]]
    report["machine"] = {
        "others_cpu_cores": spread([r["others_cpu_cores"] for r in every]),
        "steal_fraction_max": max(r["steal_fraction"] for r in every),
        "load1": spread([r["load1"] for r in every]),
        "cpus": os.cpu_count(),
    }
    return report


def measure_tokens_per_s(model: Path, settings: dict, url: str, server_pid: int, model_id: str,
                         tokens: int, rounds: int, workers: int) -> dict:
    """Warm both sides, then measure interleaved rounds (see the module docstring)."""
    import concurrent.futures

    import httpx

    direct = DirectLlama(model, settings)
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            # Every worker loads the model on its first call: warm them all before measuring.
            with concurrent.futures.ThreadPoolExecutor(workers * 2) as pool:
                list(pool.map(lambda i: http_run(client, model_id, SEED + i, 4, stream=False), range(workers * 3)))
            http_run(client, model_id, SEED, 4, stream=True)
            report = measure_rounds(direct, client, model_id, server_pid, tokens, rounds)
            # Both load with the same n_threads (llama_params); their thread counts show it.
            report["os_threads"] = {"direct": os_threads(direct.process.pid),
                                    "workers": [os_threads(pid) for pid in workers_of(server_pid)]}
    finally:
        direct.close()
    report["direct_warmup"] = direct.ready
    return report
