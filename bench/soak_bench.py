"""Soak: the server's memory under sustained mixed load (issue 7 point 15).

Starts `permastore serve` on a fresh data folder with the tiny test model, then for
`--minutes` (default 5) runs client threads that each pick, in turn: a full GET of a
stored object, a Range GET, a GraphQL query, an upload (a signed ANS-104 item, POST /tx)
read back, and a completion on the tiny model. The server's RSS is sampled every second;
the first `--warm-up` seconds (default 60) are start-up, and what it grows after that is
the figure: total growth, growth per minute (least squares), per request kind counts and
errors. Baseline: the server's own RSS at the end of the warm-up, in the same run.

    python bench/soak_bench.py                   # 5 minutes
    python bench/soak_bench.py --minutes 1 --warm-up 20

Writes bench/out/soak_bench.json (or --out) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from permastore.protocol import ans104
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.proc_memory import memory_of  # noqa: E402
from tests.helpers.servers import start_server  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "bench" / "out"
TINY_GGUF = REPO / "fixtures" / "tiny-llama.gguf"
KINDS = ("get", "range", "graphql", "upload", "completion")
GRAPHQL = '{ transactions(first: 5, tags: [{name: "App-Name", values: ["soak"]}]) { edges { node { id } } } }'


def add_model(data: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "permastore.cli.main", "--data", str(data), "model", "add",
                           str(TINY_GGUF)], capture_output=True, text=True, timeout=300, check=True)
    return done.stdout.strip()


class Load:
    """The request mix of one client thread, and the counts every thread adds to."""

    def __init__(self, url: str, model_id: str, seed_ids: list[str], kinds: tuple[str, ...] = KINDS):
        self.url = url
        self.kinds = kinds
        self.model_id = model_id
        self.ids = list(seed_ids)
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.lock = threading.Lock()

    def run(self, stop_at: float, seed: int) -> None:
        rng = random.Random(seed)
        signer = Ed25519Signer(rng.randbytes(32))
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while time.monotonic() < stop_at:
                kind = rng.choice(self.kinds)
                try:
                    ok = self._one(client, kind, rng, signer)
                except httpx.HTTPError:
                    ok = False
                with self.lock:
                    self.counts[kind] += 1
                    if not ok:
                        self.errors[kind] += 1

    def _one(self, client: httpx.Client, kind: str, rng: random.Random, signer: Ed25519Signer) -> bool:
        with self.lock:
            object_id = rng.choice(self.ids)
        if kind == "get":
            return client.get(f"/{object_id}").status_code == 200
        if kind == "range":
            return client.get(f"/{object_id}", headers={"Range": "bytes=10-99"}).status_code == 206
        if kind == "graphql":
            return client.post("/graphql", json={"query": GRAPHQL}).status_code == 200
        if kind == "upload":
            data = rng.randbytes(rng.randint(100, 20000))
            item = ans104.build_item(signer, data, [Tag.text("App-Name", "soak")])
            posted = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"})
            item_id = ans104.parse_header(item).id
            back = client.get(f"/{item_id}")
            if posted.status_code == 200 and back.content == data:
                with self.lock:
                    if len(self.ids) < 2000:
                        self.ids.append(item_id)
                return True
            return False
        reply = client.post("/v1/completions", json={"model": self.model_id, "prompt": f"soak {rng.randint(0, 9)}",
                                                     "max_tokens": 4, "seed": rng.randint(1, 1000)})
        return reply.status_code == 200


def seed_objects(url: str, count: int) -> list[str]:
    signer = Ed25519Signer(os.urandom(32))
    ids = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(count):
            item = ans104.build_item(signer, os.urandom(4096 + i), [Tag.text("App-Name", "soak")])
            client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"}).raise_for_status()
            ids.append(ans104.parse_header(item).id)
    return ids


def slope_mib_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 2:
        return 0.0
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_m = sum(m for _, m in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in samples)
    return (cov / var) * 60 if var else 0.0


def soak(minutes: float, warm_up: float, threads: int, work: Path, kinds: tuple[str, ...] = KINDS) -> dict:
    data = work / "data"
    model_id = add_model(data)
    server = start_server(data, work / "serve.log", "--mine-interval", "0")
    process, url = server.process, server.url
    try:
        load = Load(url, model_id, seed_objects(url, 20), kinds)
        started = time.monotonic()
        stop_at = started + warm_up + minutes * 60
        clients = [threading.Thread(target=load.run, args=(stop_at, i), daemon=True) for i in range(threads)]
        for thread in clients:
            thread.start()
        samples: list[tuple[float, float]] = []
        while time.monotonic() < stop_at:
            samples.append((time.monotonic() - started, memory_of(process.pid)["rss_mib"]))
            time.sleep(1.0)
        for thread in clients:
            thread.join(180)
        end_rss = memory_of(process.pid)["rss_mib"]
    finally:
        process.terminate()
        process.wait(60)
    after = [(t, m) for t, m in samples if t >= warm_up]
    baseline = after[0][1] if after else samples[0][1]
    # Bounded caches (the gateway's small-object cache: 64 MiB) fill during the first minutes;
    # a leak keeps its slope to the end, so the last half is reported on its own too.
    last_half = after[len(after) // 2:]
    return {
        "minutes": minutes, "warm_up_s": warm_up, "threads": threads, "kinds": list(kinds),
        "requests": dict(load.counts), "errors": dict(load.errors), "total_requests": sum(load.counts.values()),
        "rss_start_mib": samples[0][1], "rss_after_warm_up_mib": baseline, "rss_end_mib": end_rss,
        "rss_peak_mib": max(m for _, m in samples),
        "growth_after_warm_up_mib": end_rss - baseline,
        "growth_mib_per_min": slope_mib_per_min(after),
        "last_half_growth_mib": (last_half[-1][1] - last_half[0][1]) if last_half else 0.0,
        "last_half_mib_per_min": slope_mib_per_min(last_half),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0, help="measured load after the warm-up (default 5)")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds of load before measuring (default 60)")
    parser.add_argument("--threads", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"request kinds to mix (default {','.join(KINDS)})")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "soak_bench.json")
    args = parser.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="soak-bench-", dir=OUT_DIR))
    try:
        kinds = tuple(kind for kind in args.kinds.split(",") if kind)
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            parser.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
        report = soak(args.minutes, args.warm_up, args.threads, work, kinds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"{report['total_requests']} requests in {args.minutes:g} min + {args.warm_up:g} s warm-up "
          f"({', '.join(f'{k} {v}' for k, v in sorted(report['requests'].items()))}); "
          f"errors {sum(report['errors'].values())} {report['errors'] or ''}")
    print(f"server RSS: start {report['rss_start_mib']:.1f} MiB, after warm-up {report['rss_after_warm_up_mib']:.1f}, "
          f"end {report['rss_end_mib']:.1f}, peak {report['rss_peak_mib']:.1f}; growth after warm-up "
          f"{report['growth_after_warm_up_mib']:+.1f} MiB ({report['growth_mib_per_min']:+.2f} MiB/min); "
          f"last half {report['last_half_growth_mib']:+.1f} MiB ({report['last_half_mib_per_min']:+.2f} MiB/min)")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
