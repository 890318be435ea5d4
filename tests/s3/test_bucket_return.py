"""A data folder opened once on another bucket (or prefix) and brought back reads everything its bucket holds."""

from __future__ import annotations

import dataclasses
import os
import uuid

from permastore.store import Store
from tests.cli.conftest import seed_wallet

MB = 1024 * 1024


def _read(store: Store, id: str) -> bytes:
    return b"".join(store.read(id))


def _put_evicted_and_learned(tmp_path, settings):
    """On settings' bucket: a folder whose first object is evicted from its cache, and an object it
    learned from another node (its data only in the bucket); return (folder, {id: bytes})."""
    folder = seed_wallet(tmp_path / "node")
    evicted, kept = os.urandom(6 * MB), os.urandom(6 * MB)
    learned = os.urandom(3 * MB + 17)
    with Store.open(seed_wallet(tmp_path / "other"), bucket=settings) as other:
        learned_id = other.put_data(learned).id
    with Store.open(folder, bucket=settings) as store:
        assert store.info(learned_id) is not None  # learned at open, data left in the bucket
        evicted_id = store.put_data(evicted).id
        kept_id = store.put_data(kept).id  # pushes the first one out of the 8 MB cache
        store.trim_cache()
    return folder, {evicted_id: evicted, kept_id: kept, learned_id: learned}


def test_back_on_its_bucket_after_another_every_object_reads_again(tmp_path, bucket, seaweedfs):
    home = dataclasses.replace(bucket, cache_size=8 * MB)
    folder, stored = _put_evicted_and_learned(tmp_path, home)
    away = dataclasses.replace(home, bucket=f"test-{uuid.uuid4().hex[:12]}")
    seaweedfs.client.create_bucket(Bucket=away.bucket)
    with Store.open(folder, bucket=away) as store:
        away_id = store.put_data(b"put while on the other bucket").id

    with Store.open(folder, bucket=home) as store:
        for id, data in stored.items():
            assert _read(store, id) == data, id
        assert _read(store, away_id) == b"put while on the other bucket"  # published into home on return
        assert store.fsck().ok

    with Store.open(folder, bucket=away) as store:  # and the other bucket's records came back with it
        assert _read(store, away_id) == b"put while on the other bucket"
        assert store.fsck().ok is False  # what only home holds is reported there, never served wrong


def test_back_on_its_prefix_after_another_prefix_every_object_reads_again(tmp_path, bucket):
    home = dataclasses.replace(bucket, cache_size=8 * MB)
    folder, stored = _put_evicted_and_learned(tmp_path, home)
    with Store.open(folder, bucket=dataclasses.replace(home, prefix="elsewhere/")):
        pass
    with Store.open(folder, bucket=home) as store:
        for id, data in stored.items():
            assert _read(store, id) == data, id
        assert store.fsck().ok
