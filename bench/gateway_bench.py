"""Gateway benchmark: permastore's GET /{id} against nginx (sendfile) and arlocal, same files, same run.

Measures, each with the server's peak RSS (VmHWM) and the server's CPU time per request
(user + system of the server and its children, from /proc, over each measured run):
  1. one big object downloaded through GET /{id} (verified) vs nginx sendfile: throughput ratio;
  2. 1 KiB objects, keep-alive, concurrency 64 (wrk): req/s and p99 vs nginx and vs arlocal;
  3. random 1 MiB Range requests on the big object (sequential, keep-alive) vs nginx.
The same node is also run on uvicorn's plain h11 protocol, what it falls back to on an
uvicorn other than the tested minor (gateway.server.FAST_PATH_UVICORN): the fast path's
gain is permastore / permastore_h11 on every figure (--no-h11 skips it).

Usage (the lead runs full size at the end; defaults are small so a trial run is cheap):
    python bench/gateway_bench.py --big-size 2200000000 --small-count 1000 --duration 15 --rounds 3
    python bench/gateway_bench.py --big-size 64000000 --duration 5 --rounds 2   # quick check
Servers run side by side and rounds alternate between them; medians are reported.
Needs nginx and wrk (apt-get install nginx-light wrk), curl, and node with
tests/interop/node_modules for arlocal (--no-arlocal skips that comparison).
Prints one JSON object with every figure and ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from files import write_random
from ports import free_port

REPO = Path(__file__).resolve().parents[1]
INTEROP = REPO / "tests" / "interop"
WRK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n % #paths) + 1])
end
"""
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path {root}/tmp;
  proxy_temp_path {root}/tmp;
  fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp;
  scgi_temp_path {root}/tmp;
  server {{
    listen 127.0.0.1:{port};
    root {root}/www;
  }}
}}
"""


def peak_rss_kib(pids: list[int]) -> int:
    """Given process IDs, return the sum of their peak resident sizes (VmHWM) in KiB."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process and its live children have used so far."""
    ticks = 0
    for each in (pid, *children_of(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def ingest(data_dir: Path, big: Path, small: list[bytes]) -> tuple[str, list[str]]:
    """Store the big file and the small objects through the Store API; return their IDs."""
    from permastore.store import Store

    store = Store.open(data_dir)
    try:
        with open(big, "rb") as stream:
            big_id = store.put_data(stream, content_type="application/octet-stream").id
        small_ids = [store.put_data(data, content_type="application/octet-stream").id for data in small]
    finally:
        store.close()
    return big_id, small_ids


# The node as `python -m gateway` runs it, but with the fast path's version fence failing, so it
# serves on uvicorn's h11 protocol exactly as it would on an untested uvicorn.
H11_LAUNCHER = (
    "import sys, gateway.server as server; server.FAST_PATH_UVICORN = (-1, -1); "
    "from gateway.__main__ import main; sys.argv[0] = 'gateway'; sys.exit(main())"
)


def start_permastore(data_dir: Path, log: Path, h11: bool = False) -> tuple[subprocess.Popen, str]:
    launcher = ["-c", H11_LAUNCHER] if h11 else ["-m", "gateway"]
    command = [sys.executable, *launcher, "serve", "--data", str(data_dir), "--port", "0", "--mine-interval", "0"]
    process = subprocess.Popen(command, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    return process, wait_for_line(process, log, lambda line: line.split("listening on ", 1)[1].strip() if "listening on " in line else None)


def start_nginx(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    (root / "tmp").mkdir(exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port))
    process = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(url + "/", process)
    return process, url


def start_arlocal(log: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        ["node", str(INTEROP / "start_arlocal.js")], cwd=INTEROP, stdout=open(log, "wb"), stderr=subprocess.STDOUT
    )
    return process, wait_for_line(process, log, lambda line: json.loads(line).get("url") if line.startswith("{") else None)


def wait_for_line(process, log: Path, parse, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            found = parse(line)
            if found:
                return found
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"server did not start; log:\n{log.read_text(errors='replace')[-2000:]}")


def wait_for_http(url: str, process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    raise SystemExit(f"{url} never answered")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def download_mb_s(url: str, size: int) -> float:
    """Return the speed of one download of url (curl, to /dev/null) in MB/s."""
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    got, seconds = int(out[0]), float(out[1])
    if got != size:
        raise SystemExit(f"{url}: downloaded {got} bytes, expected {size}")
    return size / seconds / 1e6


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(samples: dict) -> dict:
    """Given per-server samples of each round, return medians, ratios and the targets."""
    ours, nginx = samples["permastore"], samples["nginx"]

    def small_stats(runs):
        keys = ("req_per_s", "p50_ms", "p99_ms", "non_2xx", "cpu_us_per_req")
        return {key: round(median([r[key] for r in runs]), 2) for key in keys if all(key in r for r in runs)}

    big = {name: round(median(s["big"]), 1) for name, s in (("permastore", ours), ("nginx", nginx))}
    small = {name: small_stats(s["small"]) for name, s in samples.items()}
    summary = {
        "big_download_mb_s": {**big, "ratio": round(big["permastore"] / big["nginx"], 3), "target": 0.8,
                              "rounds": {"permastore": [round(v, 1) for v in ours["big"]], "nginx": [round(v, 1) for v in nginx["big"]]}},
        "small_objects": {**small, "ratio_vs_nginx": round(small["permastore"]["req_per_s"] / small["nginx"]["req_per_s"], 3),
                          "target_vs_nginx": 0.5},
        "ranges_1mib": {name: {"req_per_s": round(median([r["req_per_s"] for r in s["ranges"]]), 1),
                               "mb_per_s": round(median([r["mb_per_s"] for r in s["ranges"]]), 1)}
                        for name, s in (("permastore", ours), ("nginx", nginx))},
    }
    summary["ranges_1mib"]["ratio"] = round(summary["ranges_1mib"]["permastore"]["req_per_s"] / summary["ranges_1mib"]["nginx"]["req_per_s"], 3)
    summary["cpu"] = cpu_figures(samples)
    if "permastore_h11" in samples:
        summary["fast_path_gain"] = fast_path_gain(summary, samples)
    if "arlocal" in small:
        summary["small_objects"]["ratio_vs_arlocal"] = round(small["permastore"]["req_per_s"] / small["arlocal"]["req_per_s"], 3)
        summary["small_objects"]["target_vs_arlocal"] = 3.0
    return summary


def cpu_figures(samples: dict) -> dict:
    """Given the samples, return each server's median CPU per request (ranges, small) and per MB (big)."""
    figures = {}
    for name, s in samples.items():
        entry = {"small_cpu_us_per_req": round(median([r["cpu_us_per_req"] for r in s["small"]]), 1)}
        if s["ranges"]:
            entry["range_cpu_us_per_req"] = round(median([r["cpu_us_per_req"] for r in s["ranges"]]), 1)
            entry["big_cpu_ms_per_mb"] = round(median(s["big_cpu_ms_per_mb"]), 3)
        figures[name] = entry
    return figures


def fast_path_gain(summary: dict, samples: dict) -> dict:
    """Given the summary, return the uvicorn fast path's gain over the h11 fallback (same node, same run)."""
    fast, plain = samples["permastore"], samples["permastore_h11"]
    cpu = summary["cpu"]

    def ratio(a: float, b: float) -> float:
        return round(a / b, 3) if b else 0.0

    return {
        "small_req_per_s": ratio(median([r["req_per_s"] for r in fast["small"]]),
                                 median([r["req_per_s"] for r in plain["small"]])),
        "range_req_per_s": ratio(median([r["req_per_s"] for r in fast["ranges"]]),
                                 median([r["req_per_s"] for r in plain["ranges"]])),
        "big_mb_s": ratio(median(fast["big"]), median(plain["big"])),
        "small_cpu_per_req_h11_over_fast": ratio(cpu["permastore_h11"]["small_cpu_us_per_req"],
                                                 cpu["permastore"]["small_cpu_us_per_req"]),
        "range_cpu_per_req_h11_over_fast": ratio(cpu["permastore_h11"]["range_cpu_us_per_req"],
                                                 cpu["permastore"]["range_cpu_us_per_req"]),
        "big_cpu_per_mb_h11_over_fast": ratio(cpu["permastore_h11"]["big_cpu_ms_per_mb"],
                                              cpu["permastore"]["big_cpu_ms_per_mb"]),
        "rounds": {name: {"small_req_per_s": [round(r["req_per_s"]) for r in s["small"]]}
                   for name, s in (("permastore", fast), ("permastore_h11", plain))},
    }


def measured(pid: int, run):  # noqa: ANN001, ANN201
    """Run `run()`; return its result and the server's CPU seconds meanwhile."""
    before = cpu_seconds(pid)
    result = run()
    return result, cpu_seconds(pid) - before


def wrk(url: str, paths: list[str], workdir: Path, duration: int, concurrency: int, threads: int) -> dict:
    """Run wrk over the paths with keep-alive; return req/s and latency percentiles (ms)."""
    script = workdir / "paths.lua"
    script.write_text(WRK_SCRIPT)
    paths_file = workdir / f"paths-{free_port()}.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env={**os.environ, "BENCH_PATHS": str(paths_file)}, check=True,
    ).stdout
    result = {"req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            result[f"p{pct}_ms"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(errors.group(1)) if errors else 0
    return result


def ranges(url: str, size: int, count: int, length: int, seed: int = 7) -> dict:
    """Fetch count random ranges of length bytes over one keep-alive connection; return req/s and MB/s."""
    rng = random.Random(seed)
    starts = [rng.randrange(0, max(1, size - length)) for _ in range(count)]
    with httpx.Client(timeout=60) as client:
        began = time.perf_counter()
        for start in starts:
            response = client.get(url, headers={"Range": f"bytes={start}-{start + length - 1}"})
            if response.status_code != 206 or len(response.content) != min(length, size - start):
                raise SystemExit(f"range {start}: HTTP {response.status_code}, {len(response.content)} bytes")
        seconds = time.perf_counter() - began
    return {"req_per_s": count / seconds, "mb_per_s": count * length / seconds / 1e6}


def small_objects(count: int, size: int) -> list[bytes]:
    return [os.urandom(size) for _ in range(count)]


def signer_address(signer) -> str:
    from permastore.protocol.wallet import address_of

    return address_of(signer.owner)


def arlocal_upload(url: str, small: list[bytes]) -> list[str]:
    """Post the small objects to arlocal as signed format-2 txs with inline data; mine; return their IDs."""
    from permastore.protocol.signers import RsaSigner
    from permastore.protocol.tx import Transaction, sign
    from permastore.protocol.wallet import generate_jwk

    signer = RsaSigner(generate_jwk())
    ids = []
    with httpx.Client(base_url=url, timeout=60) as client:
        client.get(f"/mint/{signer_address(signer)}/1000000000000000000")  # arlocal wants funds even at reward 0
        for data in small:
            tx = sign(Transaction(format=2, data=data, data_size=len(data)), signer)
            response = client.post("/tx", json=tx.to_json())
            if response.status_code != 200:
                raise SystemExit(f"arlocal refused a tx: {response.status_code} {response.text[:200]}")
            ids.append(tx.id)
        client.get("/mine")
    return ids


def measure_rounds(servers: dict, targets: dict, root: Path, args: argparse.Namespace) -> dict:
    """Measure every target in alternating rounds; return the samples (speeds and the server's CPU)."""
    samples: dict = {name: {"big": [], "small": [], "ranges": [], "big_cpu_ms_per_mb": []} for name in targets}
    # Rounds alternate the servers, so load from elsewhere on the machine hits them alike.
    for _ in range(args.rounds):
        for name, (big_url, paths) in targets.items():
            pid = servers[name][0].pid
            if big_url:
                speed, cpu = measured(pid, lambda u=big_url: download_mb_s(u, args.big_size))
                samples[name]["big"].append(speed)
                samples[name]["big_cpu_ms_per_mb"].append(cpu * 1000 / (args.big_size / 1e6))
                got, cpu = measured(pid, lambda u=big_url: ranges(u, args.big_size, args.ranges, args.range_size))
                samples[name]["ranges"].append({**got, "cpu_us_per_req": cpu * 1e6 / args.ranges})
            got, cpu = measured(pid, lambda n=name, p=paths: wrk(
                servers[n][1], p, root, args.duration, args.concurrency, args.wrk_threads))
            requests = got["req_per_s"] * args.duration
            samples[name]["small"].append({**got, "cpu_us_per_req": cpu * 1e6 / max(1.0, requests)})
    return samples


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-size", type=int, default=256 * 1024 * 1024, help="bytes of the big object (full run: 2200000000)")
    parser.add_argument("--small-count", type=int, default=1000, help="number of 1 KiB objects")
    parser.add_argument("--small-size", type=int, default=1024)
    parser.add_argument("--arlocal-count", type=int, default=200, help="1 KiB objects posted to arlocal (signing is slow)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--ranges", type=int, default=1000)
    parser.add_argument("--range-size", type=int, default=1024 * 1024)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server (medians reported)")
    parser.add_argument("--no-arlocal", action="store_true")
    parser.add_argument("--no-h11", action="store_true", help="skip the node on uvicorn's h11 fallback")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temp files go (needs ~2x big-size)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("nginx", "wrk", "curl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install nginx-light wrk curl)")

    results: dict = {"big_size": args.big_size, "small_count": args.small_count, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="gateway-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # nginx workers run as an unprivileged user and must read the files
        www = root / "nginx" / "www"
        www.mkdir(parents=True)
        big = www / "big.bin"
        write_random(big, args.big_size)
        small = small_objects(args.small_count, args.small_size)
        began = time.perf_counter()
        big_id, small_ids = ingest(root / "data", big, small)
        results["ingest_s"] = round(time.perf_counter() - began, 2)
        for object_id, data in zip(small_ids, small):
            (www / object_id).write_bytes(data)  # nginx serves the same bytes under the same paths
        small_paths = [f"/{object_id}" for object_id in small_ids]

        servers = {"permastore": start_permastore(root / "data", root / "permastore.log")}
        if not args.no_h11:
            shutil.copytree(root / "data", root / "data-h11")  # one node per data folder (its serve lock)
            servers["permastore_h11"] = start_permastore(root / "data-h11", root / "permastore-h11.log", h11=True)
        servers["nginx"] = start_nginx(root / "nginx")
        arlocal_paths: list[str] = []
        try:
            if not args.no_arlocal:
                servers["arlocal"] = start_arlocal(root / "arlocal.log")
                arlocal_paths = [f"/{i}" for i in arlocal_upload(servers["arlocal"][1], small[: args.arlocal_count])]
            our_url, nginx_url = servers["permastore"][1], servers["nginx"][1]
            # Warm-up, not counted: one full read (the first also learns the digest), every small object once.
            download_mb_s(f"{our_url}/{big_id}", args.big_size)
            with httpx.Client() as client:
                for path in small_paths:
                    client.get(our_url + path)
            targets = {
                "permastore": (f"{our_url}/{big_id}", small_paths),
                "nginx": (f"{nginx_url}/big.bin", small_paths),
            }
            if "permastore_h11" in servers:
                h11_url = servers["permastore_h11"][1]
                download_mb_s(f"{h11_url}/{big_id}", args.big_size)  # its own warm-up (digest learnt)
                with httpx.Client() as client:
                    for path in small_paths:
                        client.get(h11_url + path)
                targets["permastore_h11"] = (f"{h11_url}/{big_id}", small_paths)
            if arlocal_paths:
                targets["arlocal"] = (None, arlocal_paths)
            samples = measure_rounds(servers, targets, root, args)
            results.update(summarise(samples))
            results["peak_rss_mib"] = {
                name: round(peak_rss_kib([process.pid, *children_of(process.pid)]) / 1024, 1)
                for name, (process, _) in servers.items()
            }
        finally:
            for process, _ in servers.values():
                stop(process)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
