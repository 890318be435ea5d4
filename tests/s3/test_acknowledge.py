"""An ID is acknowledged only once its data and header are in the bucket; the cache pins mapped files."""

from __future__ import annotations

import dataclasses
import os

import pytest

from permastore.protocol import ans104
from permastore.store import Store, StoreError
from permastore.store.bucket import layout
from permastore.store.bucket.storage import S3Storage
from tests.cli.conftest import isolated_env, run_permastore, seed_wallet

MB = 1024 * 1024


def bucket_keys(client, name: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix)
    return [entry["Key"] for page in pages for entry in page.get("Contents", ())]


def test_a_put_the_bucket_refuses_is_not_acknowledged_and_a_retry_publishes_it(tmp_path, bucket, seaweedfs):
    client = seaweedfs.client
    data = os.urandom(2 * MB)
    with Store.open(seed_wallet(tmp_path / "node"), bucket=bucket) as store:
        # The bucket becomes unreachable under the node: the put must fail, not answer an ID.
        reachable = store.bucket.storage
        store.bucket.storage = S3Storage("http://127.0.0.1:9", bucket.bucket)  # discard port: refused
        item = ans104.build_item(store.signer, data, [])
        with pytest.raises(StoreError, match="bucket"):
            store.put_item(item)
        assert bucket_keys(client, bucket.bucket, layout.HEADERS) == []
        store.bucket.storage = reachable
        info = store.put_item(item)  # the same signed item again: now published
        spans = bucket_keys(client, bucket.bucket, layout.SPANS)
        headers = bucket_keys(client, bucket.bucket, layout.HEADERS)
        assert bucket_keys(client, bucket.bucket, layout.CHUNKS) == []
        # 8 chunks in one span object: written once, by the retry, not twice.
        assert len(spans) == 1 and [layout.parse_header_key("", k)[1] for k in headers] == [info.id]


def test_the_cli_refuses_an_unreachable_bucket_clearly(tmp_path, bucket):
    env = isolated_env(tmp_path)
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    result = run_permastore("--data", seed_wallet(tmp_path / "node"), "--s3-endpoint", closed, "--s3-bucket", "nobody",
                            "put", "-", input=b"hello", env=env, timeout=120)  # fmt: skip
    assert result.returncode != 0
    err = result.stderr.decode()
    assert "bucket nobody" in err and "Traceback" not in err
    bad = run_permastore("--data", tmp_path / "node", "--cache-size", "lots", "info", "x" * 43, env=env)
    assert bad.returncode == 2 and "--cache-size" in bad.stderr.decode()


def test_a_mapped_model_file_is_pinned_and_a_bucket_only_one_is_materialised_verified(tmp_path, bucket):
    small = dataclasses.replace(bucket, cache_size=6 * MB)
    model = os.urandom(5 * MB)
    with Store.open(seed_wallet(tmp_path / "node"), bucket=small) as store:
        model_id = store.put_data(model).id
        path = store.object_path(model_id)  # as llama.cpp maps it
        store.put_data(os.urandom(5 * MB))  # over the bound: something must go, not the mapped file
        assert path.exists() and path.read_bytes() == model
        store.put_data(os.urandom(5 * MB))
        assert path.exists()
    with Store.open(seed_wallet(tmp_path / "other"), bucket=small) as store:
        view = store.object_path(model_id)  # only in the bucket here: one contiguous verified file
        assert view.read_bytes() == model


def test_an_upload_while_the_bucket_is_down_is_a_503_and_nothing_is_acknowledged(tmp_path, bucket, monkeypatch):
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.config import GatewayConfig

    monkeypatch.setenv("PERMASTORE_S3_ENDPOINT", bucket.endpoint)
    monkeypatch.setenv("PERMASTORE_S3_BUCKET", bucket.bucket)
    app = create_app(GatewayConfig(data_dir=seed_wallet(tmp_path / "node"), mine_interval=0))
    with TestClient(app, raise_server_exceptions=False) as client:
        store = app.state.node.store
        assert store.bucket is not None
        store.bucket.storage = S3Storage("http://127.0.0.1:9", bucket.bucket)  # discard port: refused
        item = ans104.build_item(store.signer, os.urandom(300 * 1024), [])
        answer = client.post("/tx", content=item, headers={"Content-Type": "application/octet-stream"})
        assert answer.status_code == 503, answer.text
        assert "bucket" in answer.json()["error"] and answer.headers["Retry-After"]
