"""A data folder restarted on another bucket, or on its bucket emptied, never claims what that bucket lacks."""

from __future__ import annotations

import dataclasses
import os
import uuid

from permastore.store import Store
from permastore.store.bucket import layout
from tests.cli.conftest import isolated_env, run_permastore, seed_wallet, start_serve
from tests.s3.test_acknowledge import bucket_keys

MB = 1024 * 1024


def header_ids(client, name: str) -> set[str]:
    return {layout.parse_header_key("", key)[1] for key in bucket_keys(client, name, layout.HEADERS)}


def empty_bucket(client, name: str) -> None:
    for key in bucket_keys(client, name, ""):
        client.delete_object(Bucket=name, Key=key)


def test_another_bucket_gets_what_the_folder_holds_and_fsck_names_what_it_cannot(tmp_path, bucket, seaweedfs):
    client = seaweedfs.client
    old = dataclasses.replace(bucket, cache_size=8 * MB)
    folder = seed_wallet(tmp_path / "node")
    with Store.open(folder, bucket=old) as store:
        small = store.put_data(b"a small record that stays in the cache").id
        evicted = store.put_data(os.urandom(6 * MB)).id
        kept = store.put_data(os.urandom(6 * MB)).id  # pushes the first large one out of the 8 MB cache
        assert store.db.execute("SELECT COUNT(*) FROM segments WHERE kind = 'object'").fetchone()[0] == 1

    new = dataclasses.replace(old, bucket=f"test-{uuid.uuid4().hex[:12]}")
    client.create_bucket(Bucket=new.bucket)
    with Store.open(folder, bucket=new) as store:  # the folder's tables describe the old bucket: void here
        assert header_ids(client, new.bucket) == {small, kept}
        report = store.fsck()
        assert [(f[0], f[1]) for f in report.failures] == [(evicted, -1)]
        assert "not in the bucket" in report.failures[0][2]
        assert b"".join(store.read(kept))  # its local copy is served, and is in the new bucket

    # A node that reads it elsewhere shows every ID the new bucket claims is there.
    with Store.open(seed_wallet(tmp_path / "reader"), bucket=new) as store:
        for id in (small, kept):
            assert len(b"".join(store.read(id))) == store.info(id).data_size
        assert store.info(evicted) is None

    # fsck --repair --peer: a node on the old bucket has the evicted one; it is published into the new one.
    env = isolated_env(tmp_path)
    peer = start_serve(tmp_path / "peer.log", "--data", str(seed_wallet(tmp_path / "peer")), "--s3-endpoint",
                       old.endpoint, "--s3-bucket", old.bucket, env=env)  # fmt: skip
    try:
        args = ("--data", folder, "--s3-endpoint", new.endpoint, "--s3-bucket", new.bucket, "fsck")
        repaired = run_permastore(*args, "--repair", "--peer", peer.url, env=env, timeout=120)
        assert repaired.returncode == 0, (repaired.stdout.decode(), repaired.stderr.decode())
        assert f"{evicted} object: repaired" in repaired.stdout.decode()
    finally:
        peer.stop()
    assert header_ids(client, new.bucket) == {small, kept, evicted}
    assert run_permastore(*args, env=env, timeout=120).returncode == 0


def test_an_emptied_bucket_is_refilled_and_the_same_bucket_is_left_alone(tmp_path, bucket, seaweedfs):
    client = seaweedfs.client
    folder = seed_wallet(tmp_path / "node")
    with Store.open(folder, bucket=bucket) as store:
        id = store.put_data(os.urandom(300_000)).id
    keys = bucket_keys(client, bucket.bucket, "")
    with Store.open(folder, bucket=bucket):  # the same bucket: nothing published again
        pass
    assert bucket_keys(client, bucket.bucket, "") == keys

    with Store.open(folder, bucket=False) as store:  # opened once without the bucket: a put only here
        offline = store.put_data(os.urandom(200_000)).id
    with Store.open(folder, bucket=bucket) as store:
        assert header_ids(client, bucket.bucket) == {id, offline}  # published at the next open on it
        assert store.fsck().ok

    empty_bucket(client, bucket.bucket)  # lost by its operator, marker included
    with Store.open(folder, bucket=bucket) as store:
        assert header_ids(client, bucket.bucket) == {id, offline}
        assert store.fsck().ok
    with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as store:
        assert len(b"".join(store.read(id))) == 300_000
        assert len(b"".join(store.read(offline))) == 200_000


def test_the_catch_up_on_every_open_is_indexed(tmp_path):
    """The query each open runs never scans the objects table (one OR once made it scan every object)."""
    from permastore.store.bucket.bucket import SCHEMA
    from permastore.store.bucket.identity import CATCH_UP_SQL

    with Store.open(seed_wallet(tmp_path / "node")) as store:
        store.db.executescript(SCHEMA)
        plan = [row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + CATCH_UP_SQL, (0,))]
    assert any(step.startswith("SEARCH o USING INTEGER PRIMARY KEY") for step in plan), plan
    assert not any(step.startswith("SCAN o") for step in plan), plan
