"""Chunk data in a bucket: put and get of one large object, bucket against the embedded default.

Measured in one run, on this machine (SeaweedFS `weed mini` on loopback, one disk):

  put_local     `permastore put FILE` on the embedded default (folder + SQLite)
  put_bucket    the same with --s3-endpoint/--s3-bucket (acknowledged once in the bucket)
                target: <= 1.5x put_local
  get_local     `permastore get ID -o OUT` on the embedded default
  get_cached    the same on the bucket node, its data still in its cache
                target: <= 1.1x get_local
  get_bucket    a fresh node on the bucket (--cache-size 0): learns the header, reads every
                chunk from the bucket, verified
  boto3_put     context: boto3's upload_file (multipart, as `aws s3 cp`) of the same file: what
                the bucket alone costs here (SeaweedFS runs on the same cores and disk)
  boto3         baseline: boto3's download_file (parallel ranged GETs, as `aws s3 cp`) of the
                same bytes stored as one S3 object; target: get_bucket <= 1.5x boto3

Wall seconds, MB/s, CPU seconds and peak RSS (MiB) of each command, and the CPU seconds
SeaweedFS spent meanwhile (weed_cpu_s: on 2 shared cores, SeaweedFS's CPU per byte is what
bounds a put with a bucket; see bench/seaweed_ceiling.py); ratios. --repeat N measures every
phase N times (fresh nodes and bucket each round) and reports each phase's median run. Before each get the page
cache of every node's files and of SeaweedFS's volumes is dropped (posix_fadvise), so no get
is faster only because its bytes were written last. Writes
bench/out/s3_bench.json (or --out). Everything under --workdir is removed at the end.

    python bench/s3_bench.py                 # 2.2 GB
    python bench/s3_bench.py --size-mb 512   # a quicker run
    python bench/s3_bench.py --repeat 3      # medians of 3 rounds (the machine is shared)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.files import write_random  # noqa: E402
from bench.proc_memory import evict_folder  # noqa: E402
from bench.timing import cpu_seconds, run_measured  # noqa: E402
from tests.s3.conftest import CREDENTIALS, SeaweedFS  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
PERMASTORE = Path(sys.executable).parent / "permastore"
KEYFILE = next((REPO / "fixtures" / "vectors" / "arweave").glob("arweave-keyfile-*.json"))
MB = 1_000_000


def run_with_rss(command: list, env: dict, server_pid: int | None = None) -> dict:
    """Run a command; return its wall, CPU and peak RSS (MiB), the CPU SeaweedFS spent meanwhile, stdout."""
    before = cpu_seconds(server_pid) if server_pid else 0.0
    result = run_measured(command, env)
    if result["rc"]:
        raise SystemExit(f"{' '.join(map(str, command))} failed: {result['stderr'][-2000:]}")
    if server_pid:
        result["weed_cpu_s"] = round(cpu_seconds(server_pid) - before, 2)
    result.pop("stderr")
    result.pop("rc")
    return result




def node(folder: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(KEYFILE, folder / "wallet.json")
    os.chmod(folder / "wallet.json", 0o600)
    return folder


def bench(size: int, work: Path, repeat: int = 1) -> dict:
    """Measure every phase repeat times (fresh nodes and bucket each time); return medians, runs and ratios."""
    source = work / "object.bin"
    write_random(source, size)
    weed_dir = work / "weed" / "data"
    weed_dir.mkdir(parents=True)
    seaweed = SeaweedFS(weed_dir)
    runs, loads = [], []
    try:
        for index in range(repeat):
            round_dir = work / f"round-{index}"
            runs.append(_measure(size, round_dir, source, seaweed))
            loads.append(round(os.getloadavg()[0], 2))  # how shared the machine was (2 cores)
            shutil.rmtree(round_dir, ignore_errors=True)
    finally:
        seaweed.stop()
    results = {label: _median(label, [run[label] for run in runs]) for label in runs[0]}
    results["ratios"] = _ratios(results)
    results["load_average_after_each_round"] = loads
    results["runs"] = runs if repeat > 1 else []
    return results


def _median(label: str, entries: list[dict]) -> dict:
    """The run with the median wall time of a phase (its own CPU and RSS figures), and every wall time."""
    ordered = sorted(entries, key=lambda entry: entry["wall_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["walls_s"] = [entry["wall_s"] for entry in entries]
    return chosen


def _measure(size: int, work: Path, source: Path, seaweed: SeaweedFS) -> dict:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    seaweed.client.create_bucket(Bucket=name)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PERMASTORE_")}
    base_env.update(CREDENTIALS, HOME=str(work))
    bucket_args = ["--s3-endpoint", seaweed.endpoint, "--s3-bucket", name]
    local, cached, fresh = node(work / "local"), node(work / "cached"), node(work / "fresh")
    ps, weed = str(PERMASTORE), seaweed.process.pid
    results = {}
    results["put_local"] = run_with_rss([ps, "--data", local, "put", source], base_env)
    results["put_bucket"] = run_with_rss([ps, "--data", cached, *bucket_args, "put", source], base_env, weed)
    local_id, bucket_id = results["put_local"]["stdout"].split()[-1], results["put_bucket"]["stdout"].split()[-1]
    out = work / "out.bin"
    for label, args, id in (
        ("get_local", ["--data", local], local_id),
        ("get_cached", ["--data", cached, *bucket_args], bucket_id),
        ("get_bucket", ["--data", fresh, *bucket_args, "--cache-size", "0"], bucket_id),
    ):
        out.unlink(missing_ok=True)
        for folder in (local, cached, fresh, seaweed.folder):
            evict_folder(folder, sync=True)
        results[label] = run_with_rss([ps, *args, "get", id, "-o", out], base_env, weed)
        if out.stat().st_size != size:
            raise SystemExit(f"{label}: got {out.stat().st_size} bytes, expected {size}")
    out.unlink(missing_ok=True)
    upload = (
        "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1])"
        ".upload_file(sys.argv[3], sys.argv[2], 'plain/object.bin')"
    )
    results["boto3_put"] = run_with_rss([sys.executable, "-c", upload, seaweed.endpoint, name, source], base_env, weed)
    code = (
        "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1])"
        ".download_file(sys.argv[2], 'plain/object.bin', sys.argv[3])"
    )
    evict_folder(seaweed.folder, sync=True)
    results["boto3"] = run_with_rss([sys.executable, "-c", code, seaweed.endpoint, name, out], base_env, weed)
    for entry in results.values():
        entry.pop("stdout", None)
        entry["MB_per_s"] = round(size / MB / entry["wall_s"], 1)
    return results


def _ratios(results: dict) -> dict:
    ratio = lambda a, b: round(results[a]["wall_s"] / results[b]["wall_s"], 3)  # noqa: E731
    return {
        "put_bucket/put_local (target <= 1.5)": ratio("put_bucket", "put_local"),
        "get_cached/get_local (target <= 1.1)": ratio("get_cached", "get_local"),
        "get_bucket/boto3 (target <= 1.5)": ratio("get_bucket", "boto3"),
        "get_bucket/get_local": ratio("get_bucket", "get_local"),
        "put_bucket/boto3_put (SeaweedFS's own ingest)": ratio("put_bucket", "boto3_put"),
        "put_bucket/(put_local + boto3_put)": round(
            results["put_bucket"]["wall_s"] / (results["put_local"]["wall_s"] + results["boto3_put"]["wall_s"]), 3
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2200, help="object size in MB (default 2200)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=1, help="measure every phase N times; report medians")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "s3_bench.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="s3-bench-", dir=args.workdir))
    try:
        results = bench(args.size_mb * MB, work, max(args.repeat, 1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["size_mb"] = args.size_mb
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
