"""Chunk data in spans: a put's new chunks 16 to a bucket object, read back with one ranged GET per span."""

from __future__ import annotations

import dataclasses
import json
import os

from permastore.store import Store
from permastore.store.bucket import layout
from permastore.store.bucket.transfer import SPAN_CHUNKS
from tests.cli.conftest import seed_wallet
from tests.s3.test_acknowledge import bucket_keys

CHUNK = 262144


class CountingStorage:
    """The node's real bucket storage, counting the requests that read chunk data."""

    def __init__(self, storage):
        self.storage = storage
        self.ranges: list[tuple[str, int, int]] = []
        self.gets: list[str] = []

    def get_range(self, key, start, end):
        self.ranges.append((key, start, end))
        return self.storage.get_range(key, start, end)

    def get(self, key):
        self.gets.append(key)
        return self.storage.get(key)

    def __getattr__(self, name):
        return getattr(self.storage, name)


def test_a_put_writes_spans_and_a_fresh_node_reads_each_span_with_one_request(tmp_path, bucket, seaweedfs):
    client = seaweedfs.client
    data = os.urandom(2 * SPAN_CHUNKS * CHUNK + 8 * CHUNK + 77)  # 41 chunks: spans of 16, 16 and 9
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        id = store.put_data(data).id
        spans = bucket_keys(client, bucket.bucket, layout.SPANS)
        assert len(spans) == 3 and bucket_keys(client, bucket.bucket, layout.CHUNKS) == []
        sizes = sorted(client.head_object(Bucket=bucket.bucket, Key=k)["ContentLength"] for k in spans)
        assert sizes == [8 * CHUNK + 77, SPAN_CHUNKS * CHUNK, SPAN_CHUNKS * CHUNK]
        # A second put sharing its first 20 chunks uploads only its new ones: one more span.
        again = store.put_data(data[: 20 * CHUNK] + os.urandom(5 * CHUNK)).id
        assert len(bucket_keys(client, bucket.bucket, layout.SPANS)) == 4

    nothing_cached = dataclasses.replace(bucket, cache_size=0)
    with Store.open(seed_wallet(tmp_path / "second"), bucket=nothing_cached) as store:
        counting = CountingStorage(store.bucket.storage)
        store.bucket.storage = counting
        assert b"".join(store.read(id)) == data
        assert len(counting.ranges) == 3 and counting.gets == []  # one ranged GET per span, not one per chunk
        across = SPAN_CHUNKS * CHUNK - 10  # a range across two spans
        assert store.read_range(id, across, 20) == data[across : across + 20]
        out = tmp_path / "out.bin"
        with open(out, "wb") as f:
            store.copy_to(again, f.fileno())  # as `permastore get -o` writes it
        assert out.read_bytes()[: 20 * CHUNK] == data[: 20 * CHUNK] and out.stat().st_size == 25 * CHUNK


def test_objects_in_the_first_layout_one_object_per_chunk_are_still_read(tmp_path, bucket, seaweedfs):
    client = seaweedfs.client
    data = os.urandom(20 * CHUNK + 5)
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        id = store.put_data(data).id
    # Rewrite the bucket as a node of the first layout left it: chunks/<BLAKE3>, a version-1 manifest.
    (header,) = bucket_keys(client, bucket.bucket, layout.HEADERS)
    body = json.loads(client.get_object(Bucket=bucket.bucket, Key=header)["Body"].read())
    for span in bucket_keys(client, bucket.bucket, layout.SPANS):
        client.delete_object(Bucket=bucket.bucket, Key=span)
    for offset, size, address, *_ in body["chunks"]:
        key = layout.chunk_key("", bytes.fromhex(address))
        client.put_object(Bucket=bucket.bucket, Key=key, Body=data[offset : offset + size])
    old = {"v": 1, **{k: body[k] for k in ("id", "kind", "raw_header", "data_size")},
           "chunks": [entry[:4] for entry in body["chunks"]]}  # fmt: skip
    client.put_object(Bucket=bucket.bucket, Key=header, Body=json.dumps(old).encode())

    with Store.open(
        seed_wallet(tmp_path / "second"), bucket=dataclasses.replace(bucket, cache_size=0)
    ) as store:
        assert b"".join(store.read(id)) == data
        assert store.read_range(id, 3 * CHUNK - 2, 4) == data[3 * CHUNK - 2 : 3 * CHUNK + 2]
        assert store.fsck().ok


def test_a_learned_data_item_evicted_from_the_cache_is_read_from_its_spans(tmp_path, bucket, seaweedfs):
    from permastore.protocol import ans104

    data = os.urandom(24 * CHUNK + 3)  # past 4 MiB: its own segment, evictable
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        id = store.put_item(ans104.build_item(store.signer, data, [])).id
    # An item is learned through the put path (its data read from the bucket, stored here), so
    # where its chunks are in the bucket must be noted from the manifest: once evicted, only that finds them.
    with Store.open(
        seed_wallet(tmp_path / "second"), bucket=dataclasses.replace(bucket, cache_size=0)
    ) as store:
        store.trim_cache()
        assert not [p for p in (store.segments_dir).iterdir() if p.name.startswith("obj-")]
        counting = CountingStorage(store.bucket.storage)
        store.bucket.storage = counting
        assert b"".join(store.read(id)) == data
        assert counting.gets == [] and len(counting.ranges) == 2


def test_fsck_reads_each_span_with_one_request_and_still_names_the_one_bad_chunk(tmp_path, bucket, seaweedfs):
    from tests.s3.test_corrupt_bucket import chunk_addresses, span_of

    client = seaweedfs.client
    data = os.urandom(2 * SPAN_CHUNKS * CHUNK + 8 * CHUNK + 77)  # 41 chunks: spans of 16, 16 and 9
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        id = store.put_data(data).id
        key, at = span_of(store, chunk_addresses(store, id)[20])  # chunk 20: the second span's fifth

    second = seed_wallet(tmp_path / "second")
    with Store.open(second, bucket=dataclasses.replace(bucket, cache_size=0)) as store:
        counting = CountingStorage(store.bucket.storage)
        store.bucket.storage = counting
        report = store.fsck()
        assert report.ok and report.chunks_checked >= 41
        chunk_reads = [r for r in counting.ranges if r[0].startswith(layout.SPANS) or r[0].startswith(layout.CHUNKS)]
        assert len(chunk_reads) == 3 and counting.gets == []  # one ranged GET per span, not one per chunk

    span = bytearray(client.get_object(Bucket=bucket.bucket, Key=key)["Body"].read())
    span[at + 7] ^= 0x01
    client.put_object(Bucket=bucket.bucket, Key=key, Body=bytes(span))
    with Store.open(second, bucket=dataclasses.replace(bucket, cache_size=0)) as store:
        report = store.fsck()
    assert [(f[0], f[1]) for f in report.failures] == [(id, 20)], report.failures
