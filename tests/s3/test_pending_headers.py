"""Tx headers without data reach the bucket: other nodes find them pending, then whole once POST /chunk completes them."""

from __future__ import annotations

import os
import time

import httpx

from permastore.store import Store
from tests.cli.conftest import isolated_env, seed_wallet, start_serve
from tests.gateway.conftest import chunk_posts, header_only, signed_tx

GRAPHQL = '{ transactions(tags: [{name: "App", values: ["pending-test"]}], first: 10) { edges { node { id data { size } } } } }'


def graphql_ids(url: str) -> dict[str, str]:
    body = httpx.post(f"{url}/graphql", json={"query": GRAPHQL}, timeout=30).json()
    return {e["node"]["id"]: e["node"]["data"]["size"] for e in body["data"]["transactions"]["edges"]}


def wait_for(condition, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, what
        time.sleep(0.5)
    return result


def test_a_pending_header_is_found_on_another_node_and_completed_there(tmp_path, bucket):
    signer_dir = seed_wallet(tmp_path / "signer")
    with Store.open(signer_dir, bucket=False) as store:
        signer = store.signer
    data = os.urandom(3 * 262144 + 5000)
    tags = {"App": "pending-test"}
    pending = signed_tx(signer, data, tags)
    empty = signed_tx(signer, b"", tags)  # data_size 0: a header is all there is

    env = isolated_env(tmp_path)
    bucket_args = ("--s3-endpoint", bucket.endpoint, "--s3-bucket", bucket.bucket)
    first = start_serve(
        tmp_path / "first.log", "--data", str(seed_wallet(tmp_path / "first")), *bucket_args, env=env
    )
    second = start_serve(tmp_path / "second.log", "--data", str(seed_wallet(tmp_path / "second")), *bucket_args,
                         env=env)  # fmt: skip
    try:
        for tx in (pending, empty):
            assert httpx.post(f"{first.url}/tx", json=header_only(tx), timeout=30).status_code == 200
        # The other node finds both by GraphQL within seconds, the pending one served as pending.
        found = wait_for(
            lambda: len(graphql_ids(second.url)) == 2 and graphql_ids(second.url), "headers not learnt"
        )
        assert found == {pending.id: str(len(data)), empty.id: "0"}
        for path in (f"/tx/{pending.id}", f"/tx/{pending.id}/status", f"/tx/{pending.id}/data_root"):
            there, here = httpx.get(second.url + path, timeout=30), httpx.get(first.url + path, timeout=30)
            assert (there.status_code, there.content) == (here.status_code, here.content), (
                path
            )  # same as its origin
        missing = httpx.get(f"{second.url}/{pending.id}", timeout=30)
        assert missing.status_code == 404, (missing.status_code, missing.text)  # missing, not corrupt
        assert httpx.get(f"{second.url}/{empty.id}", timeout=30).status_code == 200

        for post in chunk_posts(pending, data):  # the data arrives at the first node
            assert httpx.post(f"{first.url}/chunk", json=post, timeout=30).status_code == 200
        whole = wait_for(lambda: (r := httpx.get(f"{second.url}/{pending.id}", timeout=30)).status_code == 200 and r,
                         "completion not learnt")  # fmt: skip
        assert whole.content == data
    finally:
        first.stop()
        second.stop()

    # A node started after both: the completed tx and the empty one, nothing pending.
    with Store.open(seed_wallet(tmp_path / "third"), bucket=bucket) as store:
        assert b"".join(store.read(pending.id)) == data
        assert store.info(empty.id).data_size == 0 and store.info(pending.id).data_complete
