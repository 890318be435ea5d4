"""A 300 MB object through a 100 MB cache: put, get and serve with the CLI, the folder never above the bound."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx

from tests.cli.conftest import isolated_env, run_permastore, seed_wallet, start_serve

MB = 1024 * 1024
OBJECT_BYTES = 300 * MB + 12345
CACHE_BYTES = 100 * MB


def write_random_file(path: Path, size: int) -> str:
    """Write size random bytes to path; return their SHA-256 hex."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MB))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def segment_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in (data_dir / "segments").iterdir() if p.name.endswith(".seg"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(4 * MB):
            digest.update(block)
    return digest.hexdigest()


def test_an_object_three_times_the_cache_is_put_got_and_served(tmp_path, bucket):
    source = tmp_path / "big.bin"
    want = write_random_file(source, OBJECT_BYTES)
    env = isolated_env(tmp_path, PERMASTORE_S3_ENDPOINT=bucket.endpoint, PERMASTORE_S3_BUCKET=bucket.bucket)
    first, second = seed_wallet(tmp_path / "first"), seed_wallet(tmp_path / "second")

    put = run_permastore("--data", first, "--cache-size", "100M", "put", source, env=env, timeout=600)
    assert put.returncode == 0, put.stderr.decode()
    id = put.stdout.decode().split()[0]
    assert segment_bytes(first) <= CACHE_BYTES  # acknowledged, in the bucket, and trimmed to the bound
    source.unlink()

    # The same node reads it back through the bucket (its own copy was evicted).
    got = run_permastore("--data", first, "--cache-size", "100M", "get", id, "-o", tmp_path / "back.bin",
                         env=env, timeout=600)  # fmt: skip
    assert got.returncode == 0, got.stderr.decode()
    assert sha256_of(tmp_path / "back.bin") == want
    (tmp_path / "back.bin").unlink()

    # Another node, the bucket given by options (not the environment), serves it over HTTP.
    plain_env = isolated_env(tmp_path)
    server = start_serve(tmp_path / "serve.log", "--data", str(second), "--s3-endpoint", bucket.endpoint,
                         "--s3-bucket", bucket.bucket, "--cache-size", str(CACHE_BYTES), env=plain_env)  # fmt: skip
    try:
        digest, size = hashlib.sha256(), 0
        with httpx.stream("GET", f"{server.url}/{id}", timeout=120) as response:
            assert response.status_code == 200
            for block in response.iter_bytes():
                digest.update(block)
                size += len(block)
        assert (size, digest.hexdigest()) == (OBJECT_BYTES, want)
        assert segment_bytes(second) <= CACHE_BYTES
    finally:
        server.stop()
