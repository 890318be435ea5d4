"""What a node learning headers holds is bounded: an oversized header object is refused unread,
and the keys it remembers (refused, pending applied) do not grow with the bucket's life."""

from __future__ import annotations

import os
import time
from collections import Counter

from permastore.store import Store
from permastore.store.bucket import layout, learning
from permastore.store.bucket.manifest import MAX_MANIFEST
from permastore.store.index import transaction
from tests.cli.conftest import seed_wallet
from tests.store.conftest import signed_tx


class ReadCountingStorage:
    """The node's real bucket storage, counting the bytes and the requests that read each key."""

    def __init__(self, storage):
        self.storage = storage
        self.bytes_read: Counter = Counter()
        self.reads: Counter = Counter()

    def get(self, key):
        data = self.storage.get(key)
        self.reads[key] += 1
        self.bytes_read[key] += len(data or b"")
        return data

    def get_range(self, key, start, end):
        data = self.storage.get_range(key, start, end)
        self.reads[key] += 1
        self.bytes_read[key] += len(data) if data is not None else 0
        return data

    def __getattr__(self, name):
        return getattr(self.storage, name)


def fake_id(n: int) -> str:
    return f"{n:043d}"


def learner_with_counting(store: Store) -> ReadCountingStorage:
    counting = ReadCountingStorage(store.bucket.storage)
    store.bucket.storage = counting
    return counting


def test_an_oversized_header_object_is_refused_without_being_read(tmp_path, bucket, seaweedfs):
    client, name = seaweedfs.client, bucket.bucket
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        data = os.urandom(300 * 1024)
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
    huge_key = layout.header_key("", time.time_ns() // 1000, fake_id(1))
    client.put_object(Bucket=name, Key=huge_key, Body=b" " * (MAX_MANIFEST + 1))  # any writer of the bucket can

    with Store.open(seed_wallet(tmp_path / "second"), bucket=bucket) as store:
        counting = learner_with_counting(store)
        store.link.learner.refused.clear()
        with transaction(store.db) as conn:  # learn from the start again, reading through the counter
            conn.execute("DELETE FROM bucket_state")
        store.link.learner.learn()
        assert counting.bytes_read[huge_key] == 0 and counting.reads[huge_key] == 0
        assert huge_key in store.link.learner.refused
        assert b"".join(store.read(tx.id)) == data  # the other header was learnt


def test_remembered_keys_are_bounded_and_old_ones_are_not_read_again(tmp_path, bucket, seaweedfs, monkeypatch):
    client, name = seaweedfs.client, bucket.bucket
    now = time.time_ns() // 1000
    hour_ago = now - 3600 * 1_000_000
    old_bad = [layout.header_key("", hour_ago + i, fake_id(i)) for i in range(5)]
    recent_bad = [layout.header_key("", now - 1_000_000 + i, fake_id(100 + i)) for i in range(8)]
    for key in old_bad + recent_bad:
        client.put_object(Bucket=name, Key=key, Body=b"not a manifest")
    monkeypatch.setattr(learning, "MAX_REMEMBERED_KEYS", 4, raising=False)
    with Store.open(seed_wallet(tmp_path / "node"), bucket=bucket) as store:
        learner = store.link.learner
        # Keys published long before the newest one seen are never listed again: none kept.
        assert not any(key in learner.refused for key in old_bad)
        # Within the look-back window, at most the cap, the newest kept.
        assert len(learner.refused) <= 4 and recent_bad[-1] in learner.refused
        kept = [key for key in recent_bad if key in learner.refused]
        assert kept == recent_bad[-len(kept) :]  # the newest are the ones kept
        counting = learner_with_counting(store)
        learner.learn()
        learner.learn()
        assert all(counting.reads[key] == 0 for key in old_bad)  # the watermark: not fetched again
        assert all(counting.reads[key] == 0 for key in kept)  # still remembered: not fetched again
        assert len(learner.refused) <= 4


def test_an_oversized_chunk_object_is_refused_reading_no_more_than_the_chunk(tmp_path, bucket, seaweedfs):
    import pytest

    from permastore.store import CorruptChunk
    from tests.s3.test_corrupt_bucket import chunk_addresses
    from tests.s3.test_repair import to_first_layout

    chunk = 262144
    client, name = seaweedfs.client, bucket.bucket
    data = os.urandom(2 * chunk + 10)
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        first = chunk_addresses(store, tx.id)[0]
    to_first_layout(client, name, data)  # chunks/<BLAKE3>, one object each
    key = layout.chunk_key("", first)
    client.put_object(Bucket=name, Key=key, Body=data[:chunk] + b"\0" * (16 * 1024 * 1024))
    with Store.open(seed_wallet(tmp_path / "second"), bucket=bucket) as store:
        counting = learner_with_counting(store)
        with pytest.raises(CorruptChunk):
            store.read_range(tx.id, 0, 100)
        assert 0 < counting.bytes_read[key] <= chunk + 1
        assert store.read_range(tx.id, chunk, 100) == data[chunk : chunk + 100]


def test_a_header_key_stamped_in_the_future_does_not_hide_later_headers(tmp_path, bucket, seaweedfs):
    client, name = seaweedfs.client, bucket.bucket
    year = 365 * 24 * 3600 * 1_000_000
    future = layout.header_key("", time.time_ns() // 1000 + year, fake_id(7))
    client.put_object(Bucket=name, Key=future, Body=b"not a manifest")  # a clock a year ahead, or a prank
    with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as reader:
        assert future in reader.link.learner.refused
        with Store.open(seed_wallet(tmp_path / "writer"), bucket=bucket) as writer:
            data = os.urandom(1000)
            id = writer.put_data(data).id
        assert reader.link.learner.learn() == 1
        assert b"".join(reader.read(id)) == data
