"""Storage benchmark: put/get of one large incompressible file against its baselines.

Measured in one run, on the same file and machine:
- `permastore put FILE` wall time vs one hashlib SHA-384 pass over FILE (the hash the
  new ID cannot do without: the data's deep-hash), as a ratio;
- `permastore get ID -o FILE2` vs `cp FILE FILE2`, as a ratio;
- 1,000 random 1 MiB range reads (in-process Store.read_range): latency;
- peak RSS of every command (os.wait4 rusage of that child alone);
- store disk use / file size;
- 10,000 x 1 KiB put/get in-process (ops/s) and a few CLI puts (ops/s).

Usage: python bench/store_bench.py [--size 2.2GB] [--small 10000] [--repeat 3] [--workdir DIR]
(--size 0: small puts only; --small 0: no small puts.)
(--repeat N: N put/get runs, each timed right after its own baseline; the best ratio is reported
and every run is in the JSON: on a shared machine, the best run is the one least disturbed.)
Prints a table and writes bench/out/store_bench-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from files import same_bytes

BLOCK = 8 * 1024 * 1024
SEED = 20261125
HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
TARGETS = {"put_ratio": 1.25, "get_ratio": 1.5, "disk_ratio": 1.01, "rss_mb": 200}

SHA384_PASS = """
import hashlib, sys
h = hashlib.sha384()
with open(sys.argv[1], 'rb', buffering=0) as f:
    while True:
        b = f.read(8 * 1024 * 1024)
        if not b:
            break
        h.update(b)
print(h.hexdigest())
"""


def parse_size(text: str) -> int:
    """Given '256MB', '2.2GB', '1048576', return bytes (decimal units, MiB/GiB binary)."""
    units = {"gib": 2**30, "mib": 2**20, "kib": 2**10, "gb": 10**9, "mb": 10**6, "kb": 10**3, "b": 1}
    lowered = text.strip().lower()
    for suffix, factor in units.items():
        if lowered.endswith(suffix):
            return int(float(lowered[: -len(suffix)]) * factor)
    return int(lowered)


def synthesize(path: Path, size: int) -> None:
    """Write a deterministic incompressible file (numpy PCG64 stream) of exactly size bytes."""
    import numpy as np

    generator = np.random.Generator(np.random.PCG64(SEED))
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(BLOCK, left)
            out.write(generator.bytes(n))
            left -= n


TIME = "/usr/bin/time"


def run(cmd: list[str], stdout=subprocess.DEVNULL) -> dict:
    """Run a command; return wall seconds, peak RSS (MiB) of that command alone, and its stdout.

    Peak RSS comes from /usr/bin/time (a small parent): a child forked from this process
    would count our own memory, from before its exec, in its ru_maxrss.
    """
    timed = os.path.exists(TIME)
    full = [TIME, "-f", "%M", *cmd] if timed else cmd
    started = time.perf_counter()
    proc = subprocess.Popen(full, stdout=stdout, stderr=subprocess.PIPE)
    out = proc.stdout.read() if stdout == subprocess.PIPE else b""
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}): {err.decode()[-2000:]}")
    rss_kb = int(err.decode().strip().splitlines()[-1]) if timed else usage.ru_maxrss
    return {"seconds": wall, "rss_mb": rss_kb / 1024, "stdout": out.decode()}


def permastore_cmd() -> str:
    beside = Path(sys.executable).parent / "permastore"
    return str(beside) if beside.exists() else shutil.which("permastore") or "permastore"


def disk_use(data_dir: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in data_dir.rglob("*") if p.is_file())


def bench_large(work: Path, size: int, results: dict, repeat: int = 1) -> str:
    """Put and get the large file ``repeat`` times, each next to its baseline; keep the best of each."""
    cli = permastore_cmd()
    source = work / "source.bin"
    print(f"synthesizing {size:,} bytes ...", flush=True)
    synthesize(source, size)
    puts, gets = [], []
    for attempt in range(repeat):
        data_dir = work / f"data-{attempt}"
        run([cli, "--data", str(data_dir), "init"])  # first open: wallet and schema, not timed
        base_disk = disk_use(data_dir)
        sha = run([sys.executable, "-c", SHA384_PASS, str(source)])
        put = run([cli, "--data", str(data_dir), "put", str(source)], stdout=subprocess.PIPE)
        object_id = put["stdout"].strip().splitlines()[-1]
        puts.append({"seconds": put["seconds"], "rss_mb": put["rss_mb"], "sha384_seconds": sha["seconds"],
                     "sha384_rss_mb": sha["rss_mb"], "ratio": put["seconds"] / sha["seconds"]})  # fmt: skip
        copy = work / "copy.bin"
        cp = run(["cp", str(source), str(copy)])
        copy.unlink()
        get = run([cli, "--data", str(data_dir), "get", object_id, "-o", str(copy)])
        same = same_bytes(source, copy)
        copy.unlink()
        gets.append({"seconds": get["seconds"], "rss_mb": get["rss_mb"], "cp_seconds": cp["seconds"],
                     "ratio": get["seconds"] / cp["seconds"], "bytes_identical": same})  # fmt: skip
        results["disk"] = {"store_bytes": disk_use(data_dir) - base_disk, "file_bytes": size}
        results["disk"]["ratio"] = results["disk"]["store_bytes"] / size
        if attempt < repeat - 1:
            shutil.rmtree(data_dir)
    # The CLI's fixed cost (interpreter, imports, opening the store), for reading small-size ratios.
    startup = min(run([cli, "--data", str(data_dir), "query", "--tag", "x=y"])["seconds"] for _ in range(3))
    results["cli_startup_seconds"] = startup
    results["put"] = dict(min(puts, key=lambda r: r["ratio"]), runs=puts)
    results["put"]["rss_mb"] = max(r["rss_mb"] for r in puts)
    results["get"] = dict(min(gets, key=lambda r: r["ratio"]), runs=gets)
    results["get"]["rss_mb"] = max(r["rss_mb"] for r in gets)
    results["get"]["bytes_identical"] = all(r["bytes_identical"] for r in gets)
    fsck = run([cli, "--data", str(data_dir), "fsck"])
    results["fsck"] = {"seconds": fsck["seconds"], "rss_mb": fsck["rss_mb"]}
    results["data_dir"] = data_dir.name
    return object_id




def bench_ranges(work: Path, object_id: str, size: int, results: dict, count: int = 1000) -> None:
    from permastore.store import Store

    rng = random.Random(SEED)
    span = 1024 * 1024
    latencies = []
    with Store.open(work / results["data_dir"]) as store:
        for _ in range(count):
            start = rng.randrange(0, max(size - span, 1))
            began = time.perf_counter()
            got = store.read_range(object_id, start, span)
            latencies.append(time.perf_counter() - began)
            assert len(got) == min(span, size - start)
    latencies.sort()
    results["range_1mib"] = {
        "count": count,
        "mean_ms": statistics.mean(latencies) * 1000,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def bench_small(work: Path, count: int, results: dict, cli_count: int = 20) -> None:
    from permastore.protocol.tags import Tag
    from permastore.store import Store

    rng = random.Random(SEED)
    payloads = [rng.randbytes(1024) for _ in range(count)]
    with Store.open(work / "small") as store:
        began = time.perf_counter()
        ids = [store.put_data(p).id for p in payloads]
        put_seconds = time.perf_counter() - began
        began = time.perf_counter()
        for object_id, payload in zip(ids, payloads):
            assert store.read_range(object_id, 0, 1024) == payload
        get_seconds = time.perf_counter() - began
        # Baseline inside put_data: the node wallet's RSA-4096 signature alone.
        signs = max(count // 10, 1)
        began = time.perf_counter()
        for n in range(signs):
            store.signer.sign(n.to_bytes(48, "big"))
        sign_ms = 1000 * (time.perf_counter() - began) / signs
    # The same puts as items already signed (ed25519): the store's own cost without RSA-4096 signing.
    from permastore.protocol import ans104
    from permastore.protocol.signers import Ed25519Signer
    from permastore.store import codec

    signer = Ed25519Signer(rng.randbytes(32))
    items = [ans104.build_item(signer, p, [Tag(b"Path", b"inline" if n % 2 else b"pack")]) for n, p in enumerate(payloads)]
    # Baseline in the same run, alternating put by put: the two-fsync path (pack fsync, then WAL
    # fsync) that every small put took before tiny chunks were kept inline in the index.
    seconds = {"inline": 0.0, "pack": 0.0}
    default_limit = codec.INLINE_LIMIT
    with Store.open(work / "small_items") as store:
        for n, item in enumerate(items):
            path = "inline" if n % 2 else "pack"
            codec.INLINE_LIMIT = default_limit if path == "inline" else -1
            began = time.perf_counter()
            store.put_item(item)
            seconds[path] += time.perf_counter() - began
    codec.INLINE_LIMIT = default_limit
    halves = {"inline": count // 2, "pack": count - count // 2}
    item_seconds = seconds["inline"] * count / max(halves["inline"], 1)
    results["small_api"] = {
        "count": count, "put_ops_s": count / put_seconds, "get_ops_s": count / get_seconds,
        "put_item_ops_s": count / item_seconds, "put_item_ms": 1000 * item_seconds / count,
        "put_data_ms": 1000 * put_seconds / count, "rsa_sign_ms": sign_ms,
        "put_item_two_fsync_ms": 1000 * seconds["pack"] / max(halves["pack"], 1),
    }  # fmt: skip
    cli = permastore_cmd()
    sample = work / "small.bin"
    sample.write_bytes(payloads[0])
    began = time.perf_counter()
    for _ in range(cli_count):
        run([cli, "--data", str(work / "small"), "put", str(sample)])
    results["small_cli"] = {"count": cli_count, "put_ops_s": cli_count / (time.perf_counter() - began)}


def print_table(results: dict) -> None:
    put, get, disk = results.get("put"), results.get("get"), results.get("disk")
    rows = []
    if put:
        rows.append(("put (CLI)", f"{put['seconds']:.2f} s", f"sha384 {put['sha384_seconds']:.2f} s",
                     f"{put['ratio']:.2f}x (target {TARGETS['put_ratio']}x)", f"{put['rss_mb']:.0f} MiB"))  # fmt: skip
    if get:
        label = "get -o (CLI)" if get["bytes_identical"] else "get -o (CLI) BYTES DIFFER"
        rows.append((label, f"{get['seconds']:.2f} s", f"cp {get['cp_seconds']:.2f} s",
                     f"{get['ratio']:.2f}x (target {TARGETS['get_ratio']}x)", f"{get['rss_mb']:.0f} MiB"))  # fmt: skip
    if disk:
        rows.append(("disk use", f"{disk['store_bytes']:,} B", f"file {disk['file_bytes']:,} B",
                     f"{disk['ratio']:.4f}x (target {TARGETS['disk_ratio']}x)", ""))  # fmt: skip
    if "cli_startup_seconds" in results:
        rows.append(("CLI start + open", f"{results['cli_startup_seconds']:.2f} s", "(in both put and get)", "", ""))
    if "fsck" in results:
        rows.append(("fsck (CLI)", f"{results['fsck']['seconds']:.2f} s", "", "", f"{results['fsck']['rss_mb']:.0f} MiB"))
    if "range_1mib" in results:
        r = results["range_1mib"]
        rows.append(("1 MiB range read", f"mean {r['mean_ms']:.2f} ms", f"p50 {r['p50_ms']:.2f} ms", f"p99 {r['p99_ms']:.2f} ms", ""))
    if "small_api" in results:
        s = results["small_api"]
        rows.append((f"{s['count']} x 1 KiB (API)", f"put {s['put_ops_s']:.0f}/s ({s['put_data_ms']:.2f} ms)",
                     f"get {s['get_ops_s']:.0f}/s", f"signed items {s['put_item_ops_s']:.0f}/s ({s['put_item_ms']:.2f} ms;"
                     f" two-fsync path {s['put_item_two_fsync_ms']:.2f} ms)",
                     f"RSA sign {s['rsa_sign_ms']:.2f} ms"))  # fmt: skip
    if "small_cli" in results:
        s = results["small_cli"]
        rows.append((f"{s['count']} x 1 KiB (CLI)", f"put {s['put_ops_s']:.1f}/s", "", "", ""))
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="2.2GB", help="large file size (default 2.2GB; e.g. 256MB)")
    parser.add_argument("--small", type=int, default=10_000, help="number of 1 KiB objects (default 10000)")
    parser.add_argument("--workdir", help="scratch folder (default: a temp folder under bench/out)")
    parser.add_argument("--repeat", type=int, default=1, help="put/get runs, each beside its baseline; best ratio kept (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    size = parse_size(args.size)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="work-", dir=OUT_DIR))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"size": size, "python": sys.version.split()[0], "cpus": os.cpu_count(),
                     "load_avg_start": os.getloadavg()}  # fmt: skip
    try:
        if size:
            object_id = bench_large(work, size, results, max(args.repeat, 1))
            bench_ranges(work, object_id, size, results)
        if args.small:
            bench_small(work, args.small, results)
    finally:
        results["load_avg_end"] = os.getloadavg()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(results)
    out = OUT_DIR / f"store_bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
