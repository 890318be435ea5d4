"""fsck of chunk data in a bucket: one ranged GET per span against one GET per chunk.

Measured in one run, on this machine (SeaweedFS `weed mini` on loopback):

  fsck          `permastore fsck` on a fresh node over the bucket (--cache-size 0: every chunk
                is read back from the bucket), spans read whole (bucket/read_back.py)
  per_chunk     baseline: the same node, every chunk the bucket should hold read with its own
                GET (Bucket.load_chunk) and checked against its BLAKE3, as fsck did before

Wall seconds, CPU seconds and peak RSS (MiB) of each (a child process each, with its start-up
and store open), the CPU SeaweedFS spent meanwhile, and the ratio. --repeat N alternates them.

    python bench/bucket_fsck_bench.py                 # 300 MB
    python bench/bucket_fsck_bench.py --size-mb 1000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from files import write_random  # noqa: E402
from timing import cpu_seconds, run_measured  # noqa: E402

from tests.helpers.keys import seed_wallet  # noqa: E402
from tests.s3.conftest import CREDENTIALS, SeaweedFS  # noqa: E402

BUCKET = "fsck-bench"
PERMASTORE = Path(sys.executable).parent / "permastore"
OUT = REPO / "bench" / "out" / "bucket_fsck_bench.json"
KEYFILE = REPO / "fixtures" / "vectors" / "arweave" / "arweave-keyfile-fOVzBRTBnyt4VrUUYadBH8yras_-jhgpmNgg-5b3vEw.json"


def per_chunk(folder: str) -> None:
    """The baseline, in its own process: every bucket chunk of the node read with one GET, checked."""
    import blake3

    from permastore.store import Store
    from permastore.store.bucket.settings import BucketSettings

    settings = BucketSettings(os.environ["PERMASTORE_S3_ENDPOINT"], BUCKET, cache_size=0)
    with Store.open(Path(folder), bucket=settings) as store:
        rows = store.db.execute("SELECT b.hash, k.size FROM bucket_chunks b JOIN chunks k ON k.hash = b.hash").fetchall()
        for row in rows:
            raw = store.bucket.load_chunk(bytes(row["hash"]), row["size"])
            if blake3.blake3(raw).digest() != bytes(row["hash"]):
                raise SystemExit("a bucket chunk does not verify")
    print(len(rows))


def measured(command: list, env: dict, weed_pid: int) -> dict:
    before = cpu_seconds(weed_pid)
    result = run_measured(command, env)
    if result["rc"] != 0:
        raise SystemExit(f"{command[1:3]} failed: {result['stderr'][-1000:]}")
    return {k: result[k] for k in ("wall_s", "cpu_s", "peak_rss_mib")} | {
        "weed_cpu_s": round(cpu_seconds(weed_pid) - before, 2), "said": result["stdout"].splitlines()[-1:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bucket-fsck-bench-"))
    (work / "weed").mkdir()
    seaweed = SeaweedFS(work / "weed")
    try:
        seaweed.client.create_bucket(Bucket=BUCKET)
        env = {**os.environ, **CREDENTIALS, "PERMASTORE_S3_ENDPOINT": seaweed.endpoint, "PERMASTORE_S3_BUCKET": BUCKET}
        source = work / "object.bin"
        write_random(source, args.size_mb * 1_000_000)
        jwk = json.loads(KEYFILE.read_text())
        put = run_measured([str(PERMASTORE), "--data", str(seed_wallet(work / "first", jwk)), "put", str(source)], env)
        if put["rc"] != 0:
            raise SystemExit(f"put failed: {put['stderr'][-1000:]}")
        node = [str(PERMASTORE), "--data", str(seed_wallet(work / "second", jwk)), "--cache-size", "0"]
        rounds = []
        for _ in range(max(args.repeat, 1)):
            fsck = measured([*node, "fsck"], env, seaweed.process.pid)
            baseline = measured([sys.executable, __file__, "--per-chunk", node[2]], env, seaweed.process.pid)
            rounds.append({"fsck": fsck, "per_chunk": baseline, "ratio": round(baseline["wall_s"] / fsck["wall_s"], 2)})
            print(json.dumps(rounds[-1]), flush=True)
    finally:
        seaweed.stop()
        shutil.rmtree(work, ignore_errors=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"size_mb": args.size_mb, "rounds": rounds}, indent=2))
    print(f"{args.size_mb} MB: fsck through the bucket {[r['fsck']['wall_s'] for r in rounds]} s, one GET per chunk"
          f" {[r['per_chunk']['wall_s'] for r in rounds]} s: {[r['ratio'] for r in rounds]}x faster")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--per-chunk":
        per_chunk(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
