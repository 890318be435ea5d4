"""A span this node just built whose key the bucket holds already, but wrong (torn, truncated, or
written by something else): overwritten with the verified bytes before the put is acknowledged."""

from __future__ import annotations

import os

import blake3
import pytest

from permastore.store import Store
from permastore.store.bucket import layout
from permastore.store.bucket.transfer import span_name
from tests.cli.conftest import seed_wallet
from tests.s3.test_repair import bucket_object

CHUNK = 262144


def _damaged(good: bytes, how: str) -> bytes:
    if how == "truncated":
        return good[: len(good) - 1000]
    bad = bytearray(good)
    bad[CHUNK + 10 : CHUNK + 20] = os.urandom(10)  # same size, another MD5
    return bytes(bad)


@pytest.mark.parametrize("how", ["truncated", "same size"])
def test_a_bad_object_under_a_new_spans_name_is_replaced_before_the_put_is_acknowledged(tmp_path, bucket, seaweedfs, how):
    client = seaweedfs.client
    data = os.urandom(3 * CHUNK)  # an L1 tx: three chunks, one span
    key = layout.span_key("", span_name([blake3.blake3(data[i : i + CHUNK]).digest() for i in range(0, len(data), CHUNK)]))
    client.put_object(Bucket=bucket.bucket, Key=key, Body=_damaged(data, how))
    with Store.open(seed_wallet(tmp_path / "node"), bucket=bucket) as store:
        id = store.put_data(data).id
    assert bucket_object(client, bucket.bucket, key) == data
    with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as reader:
        assert b"".join(reader.read(id)) == data
