"""SeaweedFS's own ceiling here: raw PUT/GET throughput of `weed mini` on loopback.

No permastore code: obstore and boto3 write and read N bytes of random objects straight to
a fresh `weed mini` (the test fixture's flags, telemetry off), for each object size,
concurrency and set of weed flags asked for. Each row gives MB/s of the PUTs and of the
GETs, and the CPU seconds SeaweedFS and the client spent per 100 MB (on a shared 2-core
machine, CPU per byte is what decides the ceiling). Page caches of the volumes are dropped
before the GETs.

    python bench/seaweed_ceiling.py                       # the default grid (a few minutes)
    python bench/seaweed_ceiling.py --total-mb 128 --sizes 256K,16M --conc 1,16
    python bench/seaweed_ceiling.py --flags="-filer.maxMB=64" --flags=""

Measured here (2 shared cores, load 5-13; MB/s swing 2x between runs, CPU per byte does not):
PUTs 30-90 MB/s whatever the size (256 KiB-16 MiB), concurrency (1-64) or client, at
SeaweedFS 1.3-1.6 CPU-s per 100 MB for 256 KiB objects and 0.95-1.1 from 1 MiB up; GETs
of 256 KiB objects 100-360 MB/s (0.3-0.6 CPU-s per 100 MB), of 4-16 MiB 460-1050 MB/s
(0.07-0.15). No weed flag tried (-filer.maxMB, -master.volumeSizeLimitMB,
-master.volumePreallocate, the concurrentUploadLimitMB limits; GOGC) changed either.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.proc_memory import evict_folder  # noqa: E402
from bench.timing import cpu_seconds  # noqa: E402
from tests.s3.conftest import CREDENTIALS, SeaweedFS  # noqa: E402

MB = 1_000_000
SIZES = {"256K": 256 * 1024, "1M": 1 << 20, "4M": 4 << 20, "8M": 8 << 20, "16M": 16 << 20}


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ObstoreClient:
    def __init__(self, endpoint: str, bucket: str, unsigned: bool = False):
        import obstore
        from obstore.store import S3Store

        self.obstore = obstore
        options = {"allow_http": True, "pool_max_idle_per_host": "64"}
        # unsigned: UNSIGNED-PAYLOAD, so neither side hashes the body with SHA-256 for the signature.
        self.store = S3Store(bucket, endpoint=endpoint, virtual_hosted_style_request=False, client_options=options,
                             region=CREDENTIALS["AWS_REGION"], unsigned_payload=unsigned)  # fmt: skip

    def put(self, key: str, data: bytes) -> None:
        self.obstore.put(self.store, key, data, mode="create", use_multipart=False)

    def get(self, key: str) -> int:
        return len(self.obstore.get(self.store, key).bytes())


class Boto3Client:
    def __init__(self, endpoint: str, bucket: str):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=64))

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str) -> int:
        return len(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())


def measure(seaweed: SeaweedFS, kind: str, size: int, conc: int, total: int) -> dict:
    """PUT then GET total bytes in objects of size, conc requests at once; return MB/s and CPU per 100 MB."""
    name = f"ceil-{uuid.uuid4().hex[:8]}"
    seaweed.client.create_bucket(Bucket=name)
    if kind == "boto3":
        client = Boto3Client(seaweed.endpoint, name)
    else:
        client = ObstoreClient(seaweed.endpoint, name, unsigned=kind == "obstore-unsigned")
    count = max(conc, total // size)
    blob = os.urandom(size + count)  # each object its own bytes: a slice at a different start
    keys = [f"o/{i:06d}" for i in range(count)]
    row = {"client": kind, "size": size, "conc": conc, "objects": count}
    with ThreadPoolExecutor(conc) as pool:
        for op in ("put", "get"):
            if op == "get":
                evict_folder(seaweed.folder)
            weed0, own0, t0 = cpu_seconds(seaweed.process.pid), own_cpu(), time.perf_counter()
            if op == "put":
                list(pool.map(lambda i: client.put(keys[i], blob[i : i + size]), range(count)))
            else:
                got = sum(pool.map(client.get, keys))
                assert got == count * size, (got, count * size)
            wall = time.perf_counter() - t0
            per = 100 * MB / (count * size)
            row[f"{op}_MBps"] = round(count * size / MB / wall, 1)
            row[f"{op}_weed_cpu_s_per_100MB"] = round((cpu_seconds(seaweed.process.pid) - weed0) * per, 2)
            row[f"{op}_client_cpu_s_per_100MB"] = round((own_cpu() - own0) * per, 2)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--total-mb", type=int, default=256, help="bytes written and read per row (default 256 MB)"
    )
    parser.add_argument("--sizes", default="256K,1M,4M,16M")
    parser.add_argument("--conc", default="1,4,16,64")
    parser.add_argument("--clients", default="obstore,obstore-unsigned,boto3")
    parser.add_argument("--flags", action="append", help="extra weed mini flags for one server (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "seaweed_ceiling.json")
    args = parser.parse_args()
    rows = []
    for flags in args.flags or [""]:
        work = Path(tempfile.mkdtemp(prefix="weed-ceiling-"))
        (work / "data").mkdir()
        seaweed = SeaweedFS(work / "data", tuple(shlex.split(flags)))
        try:
            for kind in args.clients.split(","):
                for label in args.sizes.split(","):
                    for conc in map(int, args.conc.split(",")):
                        row = {
                            "flags": flags,
                            **measure(seaweed, kind, SIZES[label], conc, args.total_mb * MB),
                        }
                        print(json.dumps(row), flush=True)
                        rows.append(row)
        finally:
            seaweed.stop()
            shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
