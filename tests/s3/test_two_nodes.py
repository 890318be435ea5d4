"""Two nodes over one bucket: the first node's folder deleted, the second serves and finds everything."""

from __future__ import annotations

import os
import shutil
import time

import httpx

from permastore.protocol.tags import Tag
from permastore.store import Store
from tests.cli.conftest import isolated_env, seed_wallet, start_serve

GRAPHQL_TAGGED = '{ transactions(tags: [{name: "App", values: ["s3-test"]}], first: 100) { edges { node { id } } } }'


def put_objects(store: Store) -> dict[str, bytes]:
    """Put a tiny item, a packed tx, a large tx (own segment) and a repeat of chunks; return id -> bytes."""
    blobs = [b"a small record", os.urandom(700_000), os.urandom(6 * 1024 * 1024 + 123)]
    blobs.append(blobs[2][: 3 * 262144] + os.urandom(5000))  # shares chunks with the large one
    stored = {}
    for index, data in enumerate(blobs):
        info = store.put_data(data, tags=[Tag(b"App", b"s3-test"), Tag(b"N", str(index).encode())])
        stored[info.id] = data
    return stored


def graphql_ids(url: str) -> set[str]:
    body = httpx.post(f"{url}/graphql", json={"query": GRAPHQL_TAGGED}, timeout=30).json()
    return {edge["node"]["id"] for edge in body["data"]["transactions"]["edges"]}


def test_a_second_node_serves_everything_after_the_first_is_gone(tmp_path, bucket):
    first = seed_wallet(tmp_path / "first")
    with Store.open(first, bucket=bucket) as store:
        stored = put_objects(store)
    shutil.rmtree(first)  # the node that stored them is gone, with its disk

    second = seed_wallet(tmp_path / "second")
    env = isolated_env(tmp_path, PERMASTORE_S3_ENDPOINT=None)
    server = start_serve(tmp_path / "serve.log", "--data", str(second), "--s3-endpoint", bucket.endpoint,
                         "--s3-bucket", bucket.bucket, env=env)  # fmt: skip
    try:
        for id, data in stored.items():
            response = httpx.get(f"{server.url}/{id}", timeout=60)
            assert response.status_code == 200, (id, response.text[:300])
            assert response.content == data
            ranged = httpx.get(f"{server.url}/{id}", headers={"Range": "bytes=5-9"}, timeout=60)
            assert ranged.status_code == 206 and ranged.content == data[5:10]
        assert graphql_ids(server.url) == set(stored)

        # A third node puts while the second runs: the second's poll finds it within seconds.
        third = seed_wallet(tmp_path / "third")
        with Store.open(third, bucket=bucket) as store:
            late = store.put_data(b"published while the second node runs", tags=[Tag(b"App", b"s3-test")])
        deadline = time.monotonic() + 20
        while late.id not in graphql_ids(server.url):
            assert time.monotonic() < deadline, "the running node never learnt the new header"
            time.sleep(0.5)
        assert httpx.get(f"{server.url}/{late.id}", timeout=30).content == b"published while the second node runs"
    finally:
        server.stop()


def test_concurrent_puts_of_the_same_data_from_two_nodes(tmp_path, bucket):
    """Two nodes putting the same bytes at once: one copy of each chunk, both IDs served by a third node."""
    import threading

    data = os.urandom(3 * 1024 * 1024)
    results = {}

    def put(name):
        with Store.open(seed_wallet(tmp_path / name), bucket=bucket) as store:
            results[name] = store.put_data(data, tags=[Tag(b"Who", name.encode())]).id

    threads = [threading.Thread(target=put, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with Store.open(seed_wallet(tmp_path / "c"), bucket=bucket) as store:
        for id in results.values():
            assert b"".join(store.read(id)) == data
        assert store.fsck().ok


def test_a_tx_completed_by_posted_chunks_reaches_the_bucket(tmp_path, bucket):
    """A pending L1 tx completed by /chunk uploads is published when its last chunk lands."""
    from permastore.protocol import merkle
    from tests.store.conftest import signed_tx

    data = os.urandom(3 * merkle.MAX_CHUNK_SIZE + 5000)
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx)
        chunks = merkle.chunks_for(data)
        for chunk, proof in zip(chunks, merkle.build_proofs(chunks)):
            piece = data[chunk.min_byte_range : chunk.max_byte_range]
            if piece:
                store.put_chunk(tx.data_root, tx.data_size, proof.offset, piece, proof.proof)
        assert store.info(tx.id).data_complete
    shutil.rmtree(tmp_path / "first")
    with Store.open(seed_wallet(tmp_path / "second"), bucket=bucket) as store:
        assert b"".join(store.read(tx.id)) == data
        assert store.chunk_leaves(tx.id) == [c for c in merkle.chunks_for(data) if c.max_byte_range > c.min_byte_range]


def test_an_object_fetched_from_a_peer_reaches_the_bucket(tmp_path, bucket):
    """A node on the bucket that fetches an object from a peer (no bucket) publishes it once complete."""
    from permastore.sources.engine import Fetcher

    data = os.urandom(2 * 1024 * 1024 + 77)
    peer_dir = seed_wallet(tmp_path / "peer")
    with Store.open(peer_dir, bucket=False) as store:
        id = store.put_data(data).id
    peer = start_serve(tmp_path / "peer.log", "--data", str(peer_dir), env=isolated_env(tmp_path))
    try:
        with Store.open(seed_wallet(tmp_path / "fetcher"), bucket=bucket) as store:
            assert Fetcher(store, [peer.url]).fetch(id, timeout=60).data_complete
    finally:
        peer.stop()
    shutil.rmtree(tmp_path / "fetcher")
    with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as store:
        assert b"".join(store.read(id)) == data


def test_a_reading_command_on_an_empty_folder_reads_from_the_bucket(tmp_path, bucket):
    """With a bucket the folder is a cache: `get` on a folder that holds nothing yet works."""
    from tests.cli.conftest import run_permastore

    data = os.urandom(600_000)
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        id = store.put_data(data).id
    env = isolated_env(tmp_path)
    out = tmp_path / "out.bin"
    result = run_permastore("--data", tmp_path / "new", "--s3-endpoint", bucket.endpoint, "--s3-bucket", bucket.bucket,
                            "get", id, "-o", out, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert out.read_bytes() == data
    without = run_permastore("--data", tmp_path / "other", "get", id, env=env)
    assert without.returncode != 0 and b"no store at" in without.stderr
