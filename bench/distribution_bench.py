"""Model distribution: one large incompressible object held by three nodes, pulled by a fourth.

Measured in one run, on this machine (loopback, one disk):

  aria2c      baseline: `aria2c -x8 -s8` of the same file from nginx, then `sync`
  legacy      baseline: today's single-upstream read-through as it was before the fetch
              engine: the whole object streamed from one node into the store, verified
              against its data_root at the end, served only then (first byte = the end)
  floor       the same verified work with nothing but C primitives (distribution_floor.py:
              3 server processes BLAKE3 and send, a client SHA-256s, BLAKE3s, writes,
              fsyncs; no HTTP, no index): legacy / floor bounds what any pull could reach;
              and the disk's share alone (--io-only: the cold source copied, written back,
              fsynced; no hashing, no sockets), which no pull on this one disk can beat
  one_peer    `permastore pull` from one peer (the engine, one peer)
  pull        `permastore pull ID --peer A --peer B --peer C`: wall, CPU, peak RSS
              targets: <= 1.5x aria2c, >= 2x faster than legacy, peak RSS < 300 MB
  serve       `permastore serve --peer A --peer B --peer C`, then GET /{id}: time to first
              byte (target < 1 s) and to the last
  resume      a pull SIGKILLed at about 40% held, then pulled again: bytes fetched by the
              second pull (target <= 0.7x the object)
  corrupt     a pull from A, B and a proxy in front of C that flips a byte in every data
              answer (target: under 10% slower than the clean pull; C dropped)
  (B and C hold hard links of A's sealed segment: one copy of the object on the one disk, as
  for nginx; every measured fetch starts with the peers' segment out of the page cache)
  profile     where the pull's time goes (its own phase timers summed over workers),
              CPU seconds of the puller and of the three serving nodes, and the cost of
              SHA-256 and BLAKE3 over the object on this CPU

    python bench/distribution_bench.py                 # 2.2 GB
    python bench/distribution_bench.py --size-mb 256   # a quick run
    python bench/distribution_bench.py --link-rate 1gbit  # each server behind its own link (root, tc)

With --link-rate every serving node and nginx sends through a link of its own at that rate
(links.py: tc htb classes on loopback, one per server port), as peers across a network do: the
links, not this machine's two cores and one disk, bound the transfer. The floor is not run then.

Needs nginx and aria2c (Debian: apt-get install nginx aria2). Writes
bench/out/distribution_bench.json (or --out) and prints a summary. Everything it writes
under --workdir is removed at the end (keep it with --keep).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distribution_baselines import (  # noqa: E402
    aria2c_baseline,
    cold,
    cpu_seconds,
    legacy_read_through,
    same_bytes,
    write_random,
)  # fmt: skip
from links import LinkShaper  # noqa: E402
from timing import run_measured  # noqa: E402

from tests.distribution.proxy import NodeProxy  # noqa: E402
from tests.helpers.keys import seed_wallet  # noqa: E402
from tests.helpers.servers import start_server  # noqa: E402

OUT_DIR = REPO / "bench" / "out"
PERMASTORE = Path(sys.executable).parent / "permastore"
MB = 1_000_000
BLOCK = 8 * 1024 * 1024


def pull(folder: Path, object_id: str, peers: list[str], extra=()) -> dict:
    args = [str(PERMASTORE), "--data", str(folder), "pull", object_id, *extra]
    for url in peers:
        args += ["--peer", url]
    result = run_measured(args)
    if result["rc"] != 0:
        raise SystemExit(f"pull failed: {result['stderr'][-2000:]}")
    return result


def pulled_bytes(stderr: str) -> int:
    """Bytes the peers sent, from pull's summary line ('pulled N of M bytes ...')."""
    for line in stderr.splitlines():
        if line.startswith("pulled "):
            return int(line.split()[1])
    return 0  # no summary: it was complete already (a small object, pulled whole before the kill)


def session_seconds(summary: str) -> float | None:
    """The fetch session's own seconds, from pull's summary line ('pulled N of M bytes in S s ...'):
    the pull's wall time less the process's start (imports, parser, store) and exit."""
    words = summary.split()
    return float(words[words.index("in") + 1]) if "in" in words else None


def phases(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if line.startswith("time spent")), "")


# ---------------------------------------------------------------------------- the engine


def make_peers(work: Path, jwk: dict, source: Path) -> tuple[str, list]:
    """Store the file as node A's own upload (a signed L1 tx); B and C get a copy of A's folder."""
    folder = seed_wallet(work / "a", jwk)
    put = run_measured([str(PERMASTORE), "--data", str(folder), "put", str(source)])
    if put["rc"] != 0:
        raise SystemExit(f"put failed: {put['stderr']}")
    object_id = put["stdout"].strip().splitlines()[-1]
    for name in ("b", "c"):
        # Each node its own index and wallet; the sealed (0444, never written again) segment is a hard
        # link: one copy on this one disk, as the one file nginx serves (three machines would have three).
        shutil.copytree(folder, work / name, ignore=shutil.ignore_patterns("segments"))
        (work / name / "segments").mkdir()
        for segment in (folder / "segments").iterdir():
            os.link(segment, work / name / "segments" / segment.name)
    servers = [start_server(work / name, work / f"{name}.log", "--mine-interval", "0") for name in ("a", "b", "c")]
    return object_id, servers


def serve_first_byte(work: Path, jwk: dict, peers: list[str], object_id: str, source: Path) -> dict:
    folder = seed_wallet(work / "e", jwk)
    cold([work / peer for peer in ("a", "b", "c")])
    extra = sum((["--peer", url] for url in peers), [])
    node = start_server(folder, work / "e.log", "--mine-interval", "0", *extra)
    try:
        parts = urlsplit(node.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        started = time.monotonic()
        conn.request("GET", f"/{object_id}")
        response = conn.getresponse()
        first = response.read(1)
        ttfb = time.monotonic() - started
        total = len(first)
        buffer = bytearray(BLOCK)
        while True:
            count = response.readinto(buffer)
            if not count:
                break
            total += count
        wall = time.monotonic() - started
        streamed = response.getheader("x-permastore-fetching") == "1"
        conn.close()
        _wait_complete(folder, object_id)
    finally:
        node.stop()
    with_object = _object_file(folder, object_id)
    ok = total == source.stat().st_size and same_bytes(with_object, source)
    shutil.rmtree(folder)
    return {"first_byte_s": round(ttfb, 3), "wall_s": round(wall, 3), "streamed_while_fetching": streamed, "exact": ok}


def _wait_complete(folder: Path, object_id: str, timeout: float = 60) -> None:
    from permastore.store import Store

    deadline = time.monotonic() + timeout
    with Store.open(folder) as store:
        while time.monotonic() < deadline:
            info = store.info(object_id)
            if info is not None and info.data_complete:
                return
            time.sleep(0.05)


def _object_file(folder: Path, object_id: str) -> Path:
    from permastore.store import Store

    with Store.open(folder) as store:
        return store.object_path(object_id, verify=False)


def resume(work: Path, jwk: dict, peers: list[str], object_id: str, size: int) -> dict:
    from permastore.store import Store

    folder = seed_wallet(work / "f", jwk)
    cold([work / peer for peer in ("a", "b", "c")])
    args = [str(PERMASTORE), "--data", str(folder), "pull", object_id, *sum((["--peer", u] for u in peers), [])]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    held = 0
    while process.poll() is None and held < 0.4 * size:
        time.sleep(0.02)
        try:
            with Store.open(folder) as store:
                partial = store.partial_info(object_id)
                held = partial.held_bytes if partial else 0
        except Exception:
            continue
    process.send_signal(signal.SIGKILL)
    process.wait()
    with Store.open(folder) as store:
        partial = store.partial_info(object_id)
        durable = partial.held_bytes if partial else size
    second = pull(folder, object_id, peers)
    again = pulled_bytes(second["stderr"])
    shutil.rmtree(folder)
    return {"durable_at_kill": round(durable / size, 3), "second_pull_fetched": round(again / size, 3),
            "second_pull_s": second["wall_s"]}  # fmt: skip


def hash_costs(source: Path) -> dict:
    import blake3

    data_sha = data_b3 = 0.0
    with open(source, "rb") as stream:
        while True:
            block = stream.read(BLOCK)
            if not block:
                break
            view = memoryview(block)
            began = time.perf_counter()
            for at in range(0, len(view), 262144):
                hashlib.sha256(view[at : at + 262144]).digest()
            data_sha += time.perf_counter() - began
            began = time.perf_counter()
            for at in range(0, len(view), 262144):
                blake3.blake3(view[at : at + 262144]).digest()
            data_b3 += time.perf_counter() - began
    return {"sha256_s": round(data_sha, 3), "blake3_s": round(data_b3, 3)}


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=2200.0, help="object size in MB (default 2200)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to put the copies (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "distribution_bench.json")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--link-rate", default=None, metavar="RATE",
                        help="put each server behind its own link at RATE (a tc rate: 1gbit, 500mbit; needs root)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="measure aria2c, legacy and the 3-peer pull N times, interleaved (a shared machine): "
                             "the ratios are reported per round and as medians")  # fmt: skip
    args = parser.parse_args()
    size = int(args.size_mb * MB)
    work = Path(tempfile.mkdtemp(prefix="distribution-bench-", dir=args.workdir))
    work.chmod(0o755)  # nginx's workers (nobody) read the file from here
    _compiled_children(work)
    jwk = json.loads((REPO / "fixtures" / "vectors" / "arweave" /
                      "arweave-keyfile-fOVzBRTBnyt4VrUUYadBH8yras_-jhgpmNgg-5b3vEw.json").read_text())  # fmt: skip
    results: dict = {"size_bytes": size}
    servers, proxy, links = [], None, None
    try:
        source = work / "www" / "object.bin"
        source.parent.mkdir()
        write_random(source, size)
        object_id, servers = make_peers(work, jwk, source)
        peers = [s.url for s in servers]
        if args.link_rate:
            links = LinkShaper(args.link_rate)
            results["link_rate"] = args.link_rate
            for server in servers:
                links.limit(int(urlsplit(server.url).port))
        results["rounds"] = [_round(work, jwk, source, object_id, servers, links) for _ in range(max(args.repeat, 1))]
        results.update(results["rounds"][0])
        results["one_peer"] = _pull_figures(work, jwk, object_id, peers[:1], source, "p1")
        print("one_peer:", results["one_peer"], flush=True)
        results["serve"] = serve_first_byte(work, jwk, peers, object_id, source)
        print("serve:", results["serve"], flush=True)
        results["resume"] = resume(work, jwk, peers, object_id, size)
        print("resume:", results["resume"], flush=True)
        proxy = NodeProxy(peers[2], flip=True)
        results["corrupt"] = _pull_figures(work, jwk, object_id, [peers[0], peers[1], proxy.url], source, "g")
        results["corrupt"]["bad_peer_dropped"] = f"dropped {proxy.url}" in results["corrupt"].pop("summary")
        print("corrupt:", results["corrupt"], flush=True)
        results["hashing"] = hash_costs(source)
    finally:
        if links is not None:
            links.close()
        if proxy is not None:
            proxy.close()
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    _report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


def _round(work: Path, jwk: dict, source: Path, object_id: str, servers: list, links=None) -> dict:
    """One interleaved measurement of the two baselines, the floor (not behind links) and the
    3-peer pull, with every process's CPU."""
    peers = [s.url for s in servers]
    figures = {"aria2c": aria2c_baseline(work, source, links)}
    print("aria2c:", figures["aria2c"], flush=True)
    serving, began = cpu_seconds(servers[0].process.pid), time.process_time()
    figures["legacy"] = legacy_read_through(work, jwk, peers[0], object_id)
    figures["legacy"]["cpu_s"] = round(time.process_time() - began + cpu_seconds(servers[0].process.pid) - serving, 2)
    print("legacy:", figures["legacy"], flush=True)
    if links is None:
        figures["floor"] = floor(work, source)
        figures["floor"]["io_only_s"] = floor(work, source, io_only=True)["wall_s"]
        print("floor:", figures["floor"], flush=True)
    before = [cpu_seconds(s.process.pid) for s in servers]
    figures["pull"] = _pull_figures(work, jwk, object_id, peers, source, "d")
    figures["pull"]["server_cpu_s"] = [round(cpu_seconds(s.process.pid) - b, 2) for s, b in zip(servers, before)]
    print("pull:", figures["pull"], flush=True)
    return figures


def floor(work: Path, source: Path, io_only: bool = False) -> dict:
    """Run distribution_floor.py over the source (io_only: the disk's share alone); return its wall
    and CPU seconds (its output checked)."""
    dest = work / "floor.bin"
    mode = ["--io-only"] if io_only else []
    result = run_measured([sys.executable, str(Path(__file__).with_name("distribution_floor.py")), *mode, str(source), str(dest)])
    if result["rc"] != 0 or not same_bytes(source, dest):
        raise SystemExit(f"the floor run failed (exit {result['rc']}): {result['stderr'][-500:]}")
    dest.unlink()
    return json.loads(result["stdout"])


def _compiled_children(work: Path) -> None:
    """Every permastore child runs from compiled bytecode, as an installed node does (pip compiles at
    install): with PYTHONDONTWRITEBYTECODE set, each pull would compile its imports first (~0.3 s)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    for command in (["pull", "--help"], ["serve", "--help"], ["put", "--help"]):
        subprocess.run([str(PERMASTORE), *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    # `pull --help` no longer imports what a pull runs (the fetch engine, httpx): compile those too.
    modules = "permastore.sources.engine, permastore.sources.peer_set, permastore.cli.pull, gateway.app"
    subprocess.run([sys.executable, "-c", f"import {modules}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def _pull_figures(work: Path, jwk: dict, object_id: str, peers: list[str], source: Path, name: str) -> dict:
    folder = seed_wallet(work / name, jwk)
    cold([work / peer for peer in ("a", "b", "c")])
    result = pull(folder, object_id, peers)
    exact = same_bytes(_object_file(folder, object_id), source)
    shutil.rmtree(folder)
    figures = {k: result[k] for k in ("wall_s", "cpu_s", "peak_rss_mib")}
    figures["exact"] = exact
    figures["phases"] = phases(result["stderr"])
    figures["summary"] = next((line for line in result["stderr"].splitlines() if line.startswith("pulled ")), "")
    figures["session_s"] = session_seconds(figures["summary"])
    return figures


def _report(results: dict) -> None:
    aria, legacy, pulled = results["aria2c"]["wall_s"], results["legacy"]["wall_s"], results["pull"]["wall_s"]
    lines = [
        f"object: {results['size_bytes'] / MB:.0f} MB" + (f", every server behind its own {results['link_rate']} link" if 'link_rate' in results else ""),
        f"aria2c -x8 -s8 + sync: {aria:.2f} s; legacy read-through: {legacy:.2f} s (first byte {results['legacy']['first_byte_s']:.2f} s)",
        f"pull, 1 peer: {results['one_peer']['wall_s']:.2f} s; 3 peers: {pulled:.2f} s = {pulled / aria:.2f}x aria2c (target <= 1.5),"
        f" {legacy / pulled:.2f}x faster than legacy (target >= 2); peak RSS {results['pull']['peak_rss_mib']:.0f} MiB (target < 300 MB)",
        f"  the fetch session alone (wall less process start and exit): {results['pull']['session_s']:.2f} s ="
        f" {results['pull']['session_s'] / aria:.2f}x aria2c, {legacy / results['pull']['session_s']:.2f}x faster than legacy"
        f" (legacy runs inside the bench process, with no start-up)",
        f"serve --peer: first byte {results['serve']['first_byte_s']:.3f} s (target < 1), last {results['serve']['wall_s']:.2f} s",
        f"resume after SIGKILL at {results['resume']['durable_at_kill']:.0%} held: fetched {results['resume']['second_pull_fetched']:.2f}x again (target <= 0.7)",
        f"one corrupting peer: {results['corrupt']['wall_s']:.2f} s = {results['corrupt']['wall_s'] / pulled:.2f}x the clean pull (target < 1.10),"
        f" dropped: {results['corrupt']['bad_peer_dropped']}",
        f"profile: pull CPU {results['pull']['cpu_s']:.2f} s over {pulled:.2f} s wall; serving nodes' CPU {results['pull']['server_cpu_s']};"
        f" SHA-256 of the object {results['hashing']['sha256_s']:.2f} s, BLAKE3 {results['hashing']['blake3_s']:.2f} s (one core)",
        f"        {results['pull']['phases']}",
        *_round_lines(results["rounds"]),
    ]  # fmt: skip
    print("\n".join(lines))


def _round_lines(rounds: list[dict]) -> list[str]:
    """Per round: the same-run ratios and every process's CPU seconds (less sensitive to a shared machine)."""
    import statistics

    lines, to_aria, to_legacy, floor_to_legacy, disk_to_legacy = [], [], [], [], []
    for number, r in enumerate(rounds, 1):
        aria, legacy, pulled = r["aria2c"]["wall_s"], r["legacy"]["wall_s"], r["pull"]["wall_s"]
        to_aria.append(pulled / aria)
        to_legacy.append(legacy / pulled)
        cpu = r["pull"]["cpu_s"] + sum(r["pull"]["server_cpu_s"])
        line = (
            f"round {number}: aria2c {aria:.2f} s, legacy {legacy:.2f} s, pull {pulled:.2f} s (session {r['pull']['session_s']:.2f} s)"
            f" = {pulled / aria:.2f}x aria2c, {legacy / pulled:.2f}x faster than legacy; CPU s: aria2c+nginx"
            f" {r['aria2c']['cpu_s'] + r['aria2c']['nginx_cpu_s']:.2f}, legacy+its node {r['legacy']['cpu_s']:.2f},"
            f" pull+3 nodes {cpu:.2f}"
        )  # fmt: skip
        if "floor" in r:
            low = r["floor"]
            floor_to_legacy.append(legacy / low["wall_s"])
            disk_to_legacy.append(legacy / low["io_only_s"])
            line += (
                f"; floor {low['wall_s']:.2f} s (CPU s {low['cpu_s'] + low['server_cpu_s']:.2f}) = {legacy / low['wall_s']:.2f}x"
                f" faster than legacy, pull {pulled / low['wall_s']:.2f}x the floor; the disk alone {low['io_only_s']:.2f} s"
                f" = {legacy / low['io_only_s']:.2f}x faster than legacy"
            )  # fmt: skip
        lines.append(line)
    median = (f"median over {len(rounds)} rounds: {statistics.median(to_aria):.2f}x aria2c (target <= 1.5),"
              f" {statistics.median(to_legacy):.2f}x faster than legacy (target >= 2)")  # fmt: skip
    if floor_to_legacy:
        median += (f"; the floor {statistics.median(floor_to_legacy):.2f}x faster than legacy, the disk alone"
                   f" {statistics.median(disk_to_legacy):.2f}x")  # fmt: skip
    lines.append(median)
    return lines


if __name__ == "__main__":
    sys.exit(main())
