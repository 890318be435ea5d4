"""A corrupted or truncated bucket object is never served, and fsck reports it (on every node)."""

from __future__ import annotations

import os

import httpx
import pytest

from permastore.store import CorruptChunk, Store
from permastore.store.bucket import layout
from permastore.store.reader import chunk_rows
from tests.cli.conftest import isolated_env, run_permastore, seed_wallet, start_serve

CHUNK = 262144


def chunk_addresses(store: Store, id: str) -> list[bytes]:
    row = store.reader.row(id)
    return [bytes(r["hash"]) for r in chunk_rows(store.db, row["seq"], 0, row["data_size"])]


def span_of(store: Store, address: bytes) -> tuple[str, int]:
    """Given a chunk's address, return the key of the span object holding it and its offset there."""
    span, offset = store.bucket.location(address)
    return layout.span_key("", span), offset


def test_corrupt_and_truncated_bucket_chunks_are_refused_and_reported(tmp_path, bucket, seaweedfs):
    data = os.urandom(8 * CHUNK + 1000)
    first = seed_wallet(tmp_path / "first")
    with Store.open(first, bucket=bucket) as store:
        id = store.put_data(data).id
        addresses = chunk_addresses(store, id)
        (key, at3), (same, at5) = span_of(store, addresses[3]), span_of(store, addresses[5])
    client = seaweedfs.client
    assert key == same  # one span holds all 9 chunks
    span = bytearray(client.get_object(Bucket=bucket.bucket, Key=key)["Body"].read())
    span[at3 + 100] ^= 0xFF  # chunk 3 corrupted; the span cut 1000 bytes into chunk 5
    client.put_object(Bucket=bucket.bucket, Key=key, Body=bytes(span[: at5 + 1000]))

    second = seed_wallet(tmp_path / "second")
    env = isolated_env(tmp_path, PERMASTORE_S3_ENDPOINT=bucket.endpoint, PERMASTORE_S3_BUCKET=bucket.bucket)
    server = start_serve(tmp_path / "serve.log", "--data", str(second), env=env)
    try:
        good = httpx.get(f"{server.url}/{id}", headers={"Range": f"bytes=0-{CHUNK - 1}"}, timeout=30)
        assert good.status_code == 206 and good.content == data[:CHUNK]
        for index in (3, 5):
            bad = httpx.get(f"{server.url}/{id}", headers={"Range": f"bytes={index * CHUNK}-{index * CHUNK + 99}"},
                            timeout=30)  # fmt: skip
            assert bad.status_code >= 500, (index, bad.status_code)
            assert "verification" in bad.json()["error"]
        received, status = b"", None
        try:
            with httpx.stream("GET", f"{server.url}/{id}", timeout=30) as response:
                status = response.status_code
                for block in response.iter_bytes():
                    received += block
        except httpx.HTTPError:
            pass  # the stream was cut at the bad chunk
        assert status >= 500 or len(received) < len(data), (status, len(received))
        if status < 300:
            assert data.startswith(received)  # cut short, never a wrong byte
    finally:
        server.stop()

    # fsck reports both chunks: on the node that read them from the bucket, and on the one that
    # still holds a good local copy (it checks the bucket too).
    for folder in (second, first):
        result = run_permastore("--data", folder, "fsck", env=env, timeout=120)
        out = result.stdout.decode()
        assert result.returncode != 0, out
        assert f"{id} chunk 3" in out and f"{id} chunk 5" in out, out

    with Store.open(second, bucket=bucket) as store:
        with pytest.raises(CorruptChunk):
            store.read_range(id, 5 * CHUNK, 10)


def test_a_bad_local_copy_is_served_from_the_bucket_and_fsck_still_reports_it(tmp_path, bucket):
    data = os.urandom(20 * CHUNK + 99)  # past 4 MiB: its own segment
    folder = seed_wallet(tmp_path / "node")
    with Store.open(folder, bucket=bucket) as store:
        id = store.put_data(data).id
    segment = next(p for p in (folder / "segments").iterdir() if p.name.startswith("obj-"))
    segment.chmod(0o644)
    with open(segment, "r+b") as f:
        f.seek(2 * CHUNK + 10)
        f.write(b"\x00" * 16)
    with Store.open(folder, bucket=bucket) as store:
        assert b"".join(store.read(id)) == data
        report = store.fsck()
    assert not report.ok and (id, 2) in [(f[0], f[1]) for f in report.failures]
