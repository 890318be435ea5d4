"""A header whose data cannot be read from the bucket when it is learnt is tried again, and repaired from peers."""

from __future__ import annotations

import os
import time

import httpx

from permastore.protocol import ans104, merkle
from permastore.store import Store
from tests.cli.conftest import isolated_env, seed_wallet, start_serve
from tests.s3.test_corrupt_bucket import chunk_addresses
from tests.s3.test_repair import chunk_in_bucket, damage, place

CHUNK = 262144


def put_item_on(folder, settings, item: bytes) -> tuple[str, list[tuple[str, int]]]:
    """Put an item on a node over the bucket; return its ID and where each chunk is in the bucket."""
    with Store.open(folder, bucket=settings) as store:
        id = store.put_item(item).id
        return id, [place(store, address) for address in chunk_addresses(store, id)]


def test_a_header_unreadable_at_learning_is_learnt_once_its_chunk_is_back(tmp_path, bucket, seaweedfs):
    data = os.urandom(3 * CHUNK + 100)
    with Store.open(seed_wallet(tmp_path / "signer"), bucket=False) as signer_store:
        item = ans104.build_item(signer_store.signer, data, [])
    id, places = put_item_on(seed_wallet(tmp_path / "first"), bucket, item)
    original = damage(seaweedfs.client, bucket.bucket, places[1], "delete")  # the span holding chunk 1
    reader = seed_wallet(tmp_path / "reader")
    with Store.open(reader, bucket=bucket) as store:
        assert store.info(id) is None  # its data cannot be read: not indexed, not refused for good
        later = (
            time.time_ns() // 1000 + 3600 * 10**6,
        )  # as if an hour of newer headers had been learnt since
        with store.db:
            store.db.execute(
                "UPDATE bucket_state SET value = ? WHERE key = 'headers_marker'", (str(later[0]),)
            )
    seaweedfs.client.put_object(Bucket=bucket.bucket, Key=places[1][0], Body=original)
    with Store.open(reader, bucket=bucket) as store:  # another process, the LIST marker long past it
        assert b"".join(store.read(id)) == data


def test_serve_with_a_peer_repairs_an_item_it_could_not_learn(tmp_path, bucket, seaweedfs):
    data = os.urandom(3 * CHUNK + 100)
    peer_dir = seed_wallet(tmp_path / "peer")
    with Store.open(peer_dir, bucket=False) as store:
        item = ans104.build_item(store.signer, data, [])
        store.put_item(item)
    id, places = put_item_on(seed_wallet(tmp_path / "first"), bucket, item)
    start, end = list(merkle.chunk_ranges(len(data)))[2]  # Arweave balances the last two chunks
    good = data[start:end]
    damage(seaweedfs.client, bucket.bucket, places[2], "flip")

    env = isolated_env(tmp_path)
    peer = start_serve(tmp_path / "peer.log", "--data", str(peer_dir), env=env)
    server = start_serve(tmp_path / "serve.log", "--data", str(seed_wallet(tmp_path / "second")), "--s3-endpoint",
                         bucket.endpoint, "--s3-bucket", bucket.bucket, "--peer", peer.url, env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        # No request asked for it: learning repaired the chunk and rebuilt its span.
        while chunk_in_bucket(seaweedfs.client, bucket.bucket, places[2], len(good)) != good:
            assert time.monotonic() < deadline, "the bad chunk was never repaired"
            time.sleep(0.5)
        response = httpx.get(f"{server.url}/{id}", timeout=30)
        assert response.status_code == 200 and response.content == data
    finally:
        server.stop()
        peer.stop()
    assert "kept to try again" in (tmp_path / "serve.log").read_text()
