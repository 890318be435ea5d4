"""A tx whose data completes here while the bucket refuses its completed header is published later:
on the client's retried chunk (before it is acknowledged), or at the next open."""

from __future__ import annotations

import dataclasses
import os

import pytest

from permastore.protocol import b64url
from permastore.store import Store
from permastore.store.bucket import layout
from permastore.store.bucket.manifest import decode
from permastore.store.bucket.storage import BucketError
from tests.cli.conftest import seed_wallet
from tests.gateway.conftest import chunk_posts, signed_tx
from tests.s3.test_acknowledge import bucket_keys


class HeadersRefused:
    """The real bucket's storage, refusing header writes while `refusing` is set (the bucket failing
    at the moment a completed manifest is written; every other request reaches SeaweedFS)."""

    def __init__(self, storage):
        self.storage = storage
        self.refusing = False

    def put_if_absent(self, key: str, data) -> bool:
        if self.refusing and layout.HEADERS in key:
            raise BucketError(f"bucket refused {key} (test)")
        return self.storage.put_if_absent(key, data)

    def __getattr__(self, name):
        return getattr(self.storage, name)


def _chunks(tx, data):
    for post in chunk_posts(tx, data):
        yield (int(post["offset"]), b64url.decode(post["chunk"]), b64url.decode(post["data_path"]))


def _completed_manifests(client, name: str, id: str) -> int:
    manifests = [decode(client.get_object(Bucket=name, Key=key)["Body"].read())
                 for key in bucket_keys(client, name, layout.HEADERS)]  # fmt: skip
    return sum(1 for m in manifests if m.id == id and not m.pending)


def _uploaded_with_last_chunk_refused(store: Store, tx, data) -> None:
    store.put_tx(dataclasses.replace(tx, data=b""))  # published pending
    *first, last = _chunks(tx, data)
    for offset, chunk, path in first:
        store.put_chunk(tx.data_root, tx.data_size, offset, chunk, path)
    refused = store.bucket.storage = HeadersRefused(store.bucket.storage)
    refused.refusing = True
    with pytest.raises(BucketError):  # 503: not acknowledged
        store.put_chunk(tx.data_root, tx.data_size, last[0], last[1], last[2])
    refused.refusing = False
    assert store.info(tx.id).data_complete  # whole here, only pending in the bucket


def _signed(tmp_path, data):
    with Store.open(seed_wallet(tmp_path / "signer"), bucket=False) as store:
        return signed_tx(store.signer, data)


def test_a_retried_chunk_publishes_the_completed_tx_before_it_is_acknowledged(tmp_path, bucket, seaweedfs):
    data = os.urandom(3 * 262144 + 999)
    tx = _signed(tmp_path, data)
    with Store.open(seed_wallet(tmp_path / "node"), bucket=bucket) as store:
        _uploaded_with_last_chunk_refused(store, tx, data)
        offset, chunk, path = list(_chunks(tx, data))[-1]
        store.put_chunk(tx.data_root, tx.data_size, offset, chunk, path)  # the client's retry: 200
        assert _completed_manifests(seaweedfs.client, bucket.bucket, tx.id) == 1
    with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as reader:
        assert b"".join(reader.read(tx.id)) == data


def test_the_next_open_publishes_a_completed_tx_left_pending_in_the_bucket(tmp_path, bucket, seaweedfs):
    data = os.urandom(2 * 262144 + 12345)
    tx = _signed(tmp_path, data)
    folder = seed_wallet(tmp_path / "node")
    with Store.open(folder, bucket=bucket) as store:
        _uploaded_with_last_chunk_refused(store, tx, data)  # no retry: the client gave up
    with Store.open(folder, bucket=bucket) as store:
        assert _completed_manifests(seaweedfs.client, bucket.bucket, tx.id) == 1
        assert store.fsck().ok
    with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as reader:
        assert b"".join(reader.read(tx.id)) == data
