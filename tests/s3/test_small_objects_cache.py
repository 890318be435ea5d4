"""Many small objects (packs) through a small cache: the folder stays under --cache-size, every object is served."""

from __future__ import annotations

import dataclasses
import os
import random

import httpx

from permastore.store import Store
from tests.cli.conftest import isolated_env, seed_wallet, start_serve
from tests.s3.test_cache import segment_bytes

MB = 1024 * 1024
CACHE_BYTES = 4 * MB
OBJECTS = 240  # 40-60 KB each: ~12 MB of packs, three times the bound


def test_packs_are_evicted_under_the_bound_and_every_small_object_is_served(tmp_path, bucket):
    small = dataclasses.replace(bucket, cache_size=CACHE_BYTES)
    folder = seed_wallet(tmp_path / "node")
    sizes = random.Random(7).choices(range(40_000, 60_000), k=OBJECTS)
    stored: dict[str, bytes] = {}
    with Store.open(folder, bucket=small) as store:
        for size in sizes:
            data = os.urandom(size)
            stored[store.put_data(data).id] = data
            assert segment_bytes(folder) <= CACHE_BYTES  # after every put, not only at the end
        packs = store.db.execute("SELECT name FROM segments WHERE kind = 'pack'").fetchall()
        # Several packs were sealed and evicted; the names of new ones never reused an evicted one's.
        assert len(packs) < 10 and max(r["name"] for r in packs) > "pack-000008.seg"
        for id, data in stored.items():
            assert b"".join(store.read(id)) == data

    env = isolated_env(tmp_path)
    server = start_serve(tmp_path / "serve.log", "--data", str(folder), "--s3-endpoint", small.endpoint,
                         "--s3-bucket", small.bucket, "--cache-size", str(CACHE_BYTES), env=env)  # fmt: skip
    try:
        with httpx.Client(timeout=30) as client:
            for id, data in stored.items():
                response = client.get(f"{server.url}/{id}")
                assert response.status_code == 200 and response.content == data, id
    finally:
        server.stop()
    assert segment_bytes(folder) <= CACHE_BYTES
