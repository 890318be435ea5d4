"""A chunk two nodes uploaded at once in two spans: each span keeps all its members, so a bad
one is rebuilt whole (`fsck --repair --peer`) by a node that learned both."""

from __future__ import annotations

import os

from permastore.store import Store
from tests.cli.conftest import isolated_env, run_permastore, seed_wallet, start_serve
from tests.s3.test_corrupt_bucket import chunk_addresses
from tests.s3.test_repair import bucket_object, place

CHUNK = 262144


def test_a_span_sharing_a_chunk_with_another_span_is_rebuilt_whole(tmp_path, bucket, seaweedfs):
    client = seaweedfs.client
    shared = os.urandom(CHUNK)
    first, second = os.urandom(CHUNK) + shared, os.urandom(CHUNK) + shared  # L1 txs of two chunks each
    b_folder = seed_wallet(tmp_path / "b")
    with Store.open(b_folder, bucket=bucket) as b:  # opened (and done learning) before A's put
        with Store.open(seed_wallet(tmp_path / "a"), bucket=bucket) as a:
            first_id = a.put_data(first).id
        second_id = b.put_data(second).id  # uploads the shared chunk again, in a span of its own
        assert b.bucket.location(chunk_addresses(b, second_id)[1])[0] == b.bucket.location(chunk_addresses(b, second_id)[0])[0]

    c_folder = seed_wallet(tmp_path / "c")
    with Store.open(c_folder, bucket=bucket) as c:  # learns both; their data stays in the bucket
        own = chunk_addresses(c, second_id)[0]  # the chunk only the second span holds
        key, offset = place(c, own)
        assert place(c, chunk_addresses(c, second_id)[1])[0] != key  # the shared one is read from the first span
    good = bucket_object(client, bucket.bucket, key)
    bad = bytearray(good)
    bad[offset + 100 : offset + 200] = os.urandom(100)
    client.put_object(Bucket=bucket.bucket, Key=key, Body=bytes(bad))

    env = isolated_env(tmp_path)
    bucket_args = ("--s3-endpoint", bucket.endpoint, "--s3-bucket", bucket.bucket)
    peer = start_serve(tmp_path / "peer.log", "--data", str(b_folder), *bucket_args, env=env)
    try:
        args = ("--data", c_folder, *bucket_args, "fsck")
        repaired = run_permastore(*args, "--repair", "--peer", peer.url, env=env, timeout=120)
        assert repaired.returncode == 0, (repaired.stdout.decode(), repaired.stderr.decode())
    finally:
        peer.stop()
    assert bucket_object(client, bucket.bucket, key) == good  # the whole span, rebuilt
    checked = run_permastore(*args, env=env, timeout=120)
    assert checked.returncode == 0, (checked.stdout.decode(), checked.stderr.decode())
    with Store.open(seed_wallet(tmp_path / "d"), bucket=bucket) as d:
        assert b"".join(d.read(first_id)) == first and b"".join(d.read(second_id)) == second
