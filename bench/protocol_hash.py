"""Throughput of the protocol hashes over one in-memory buffer.

Given --mib N (default 256), fill N MiB with deterministic incompressible bytes and
time, in one run:

  baseline  hashlib.sha384 over the buffer (one pass)    <- what the deep-hash cannot avoid
  deephash  BlobHasher fed 1 MiB pieces                  <- must match the baseline
  baseline  hashlib.sha256 over the buffer (one pass)
  merkle    chunks_for + compute_root (SHA-256 per 256 KiB chunk, then the tree)
  builder   DataRootBuilder.add per chunk
  proofs    build_proofs for every chunk

Prints MB/s for each, the ratio to its baseline, and peak RSS.

    python bench/protocol_hash.py --mib 256
"""

import argparse
import hashlib
import resource
import time

from permastore.protocol import merkle
from permastore.protocol.deephash import BlobHasher, deep_hash

PIECE = 1 << 20


def synth(size: int) -> bytes:
    """Given a size, return that many deterministic, incompressible bytes (SHAKE-256 stream)."""
    return hashlib.shake_256(b"permastore bench").digest(size)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def best_of(runs: int, fn):
    return min(timed(fn) for _ in range(runs))


def run_deephash(view):
    hasher = BlobHasher()
    for start in range(0, len(view), PIECE):
        hasher.update(view[start : start + PIECE])
    return hasher.digest()


def run_builder(view):
    builder = merkle.DataRootBuilder()
    for start, end in merkle.chunk_ranges(len(view)):
        builder.add(view[start:end])
    return builder.root()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs per measurement")
    args = parser.parse_args()
    data = synth(args.mib << 20)
    view = memoryview(data)
    mb = len(data) / 1e6

    results = {}
    results["sha384 (baseline)"], _ = best_of(args.runs, lambda: hashlib.sha384(view).digest())
    results["deephash BlobHasher"], digest = best_of(args.runs, lambda: run_deephash(view))
    assert digest == deep_hash(data)
    results["sha256 (baseline)"], _ = best_of(args.runs, lambda: hashlib.sha256(view).digest())
    results["merkle chunks_for+root"], root = best_of(
        args.runs, lambda: merkle.compute_root(merkle.chunks_for(view))
    )
    results["merkle DataRootBuilder"], root2 = best_of(args.runs, lambda: run_builder(view))
    assert root == root2
    chunks = merkle.chunks_for(view)
    results["merkle build_proofs"], _ = best_of(args.runs, lambda: merkle.build_proofs(chunks))

    print(f"buffer {args.mib} MiB, best of {args.runs}")
    for name, seconds in results.items():
        baseline = results["sha384 (baseline)"] if "deephash" in name else results["sha256 (baseline)"]
        ratio = "" if "baseline" in name or "proofs" in name else f"  {seconds / baseline:.3f}x baseline"
        print(f"  {name:26s} {seconds:8.3f} s  {mb / seconds:9.1f} MB/s{ratio}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {peak:.0f} MiB (the buffer itself is {args.mib} MiB)")


if __name__ == "__main__":
    main()
