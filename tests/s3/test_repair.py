"""A bad or missing bucket chunk is repaired from a peer: by `serve --peer` on a read, by `fsck --repair --peer`."""

from __future__ import annotations

import os

import httpx
import pytest

from permastore.store import CorruptChunk, Store
from permastore.store.bucket import layout
from tests.cli.conftest import isolated_env, run_permastore, seed_wallet, start_serve
from tests.s3.test_corrupt_bucket import chunk_addresses
from tests.store.conftest import signed_tx

CHUNK = 262144


def bucket_object(client, name: str, address: bytes) -> bytes | None:
    try:
        return client.get_object(Bucket=name, Key=layout.chunk_key("", address))["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def damage(client, name: str, address: bytes, how: str, good: bytes) -> None:
    """Flip a byte of, truncate, or delete one chunk object in the bucket."""
    key = layout.chunk_key("", address)
    if how == "flip":
        bad = bytearray(good)
        bad[77] ^= 0x01
        client.put_object(Bucket=name, Key=key, Body=bytes(bad))
    elif how == "truncate":
        client.put_object(Bucket=name, Key=key, Body=good[:1000])
    else:
        client.delete_object(Bucket=name, Key=key)


def test_bad_bucket_chunks_are_served_and_rewritten_from_a_peer(tmp_path, bucket, seaweedfs):
    data = os.urandom(8 * CHUNK + 1000)
    first = seed_wallet(tmp_path / "first")
    with Store.open(first, bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        addresses = chunk_addresses(store, tx.id)
    peer_dir = seed_wallet(tmp_path / "peer")
    with Store.open(peer_dir, bucket=False) as store:  # a node off the bucket that holds the same tx
        store.put_tx(tx, data)
    client, name = seaweedfs.client, bucket.bucket
    chunk = [data[i * CHUNK : (i + 1) * CHUNK] for i in range(len(addresses))]
    for index, how in ((3, "flip"), (5, "truncate"), (6, "delete")):
        damage(client, name, addresses[index], how, chunk[index])

    env = isolated_env(tmp_path)
    peer = start_serve(tmp_path / "peer.log", "--data", str(peer_dir), env=env)
    second = seed_wallet(tmp_path / "second")
    bucket_args = ("--s3-endpoint", bucket.endpoint, "--s3-bucket", name)
    server = start_serve(
        tmp_path / "serve.log", "--data", str(second), *bucket_args, "--peer", peer.url, env=env
    )
    try:
        ranged = httpx.get(f"{server.url}/{tx.id}", headers={"Range": f"bytes={3 * CHUNK + 5}-{3 * CHUNK + 99}"},
                           timeout=60)  # fmt: skip
        assert ranged.status_code == 206 and ranged.content == data[3 * CHUNK + 5 : 3 * CHUNK + 100]
        whole = httpx.get(f"{server.url}/{tx.id}", timeout=60)
        assert whole.status_code == 200 and whole.content == data
    finally:
        server.stop()
    for index in (3, 5, 6):  # the bucket holds the verified bytes again
        assert bucket_object(client, name, addresses[index]) == chunk[index], index
    assert "rewritten from" in (tmp_path / "serve.log").read_text()

    # Offline: fsck reports a bad chunk, fsck --repair --peer rewrites it, fsck is clean after.
    damage(client, name, addresses[2], "flip", chunk[2])
    try:
        found = run_permastore("--data", second, *bucket_args, "fsck", env=env, timeout=120)
        assert found.returncode != 0 and f"{tx.id} chunk 2" in found.stdout.decode(), found.stdout.decode()
        alone = run_permastore("--data", second, *bucket_args, "fsck", "--repair", env=env, timeout=120)
        assert alone.returncode != 0 and f"{tx.id} chunk 2" in alone.stdout.decode()  # no copy here, no peer
        repaired = run_permastore("--data", second, *bucket_args, "fsck", "--repair", "--peer", peer.url,
                                  env=env, timeout=120)  # fmt: skip
        out = repaired.stdout.decode()
        assert repaired.returncode == 0, (out, repaired.stderr.decode())
        assert f"{tx.id} chunk 2: repaired" in out
    finally:
        peer.stop()
    assert bucket_object(client, name, addresses[2]) == chunk[2]
    clean = run_permastore("--data", second, *bucket_args, "fsck", env=env, timeout=120)
    assert clean.returncode == 0, clean.stdout.decode()

    # The node that put it still holds its chunks: fsck --repair rewrites the bucket from them, no peer needed.
    damage(client, name, addresses[4], "truncate", chunk[4])
    local = run_permastore("--data", first, *bucket_args, "fsck", "--repair", env=env, timeout=120)
    assert local.returncode == 0 and f"{tx.id} chunk 4: repaired" in local.stdout.decode(), local.stdout.decode()
    assert bucket_object(client, name, addresses[4]) == chunk[4]
    no_bucket = run_permastore("--data", first, "fsck", "--repair", env=env, timeout=120)
    assert no_bucket.returncode != 0 and "--s3-bucket" in no_bucket.stderr.decode()


def test_a_peer_sending_wrong_bytes_repairs_nothing(tmp_path, bucket, seaweedfs):
    """A peer whose copy differs (another object's bytes under the ID) is never written into the bucket."""
    data = os.urandom(3 * CHUNK + 10)
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        addresses = chunk_addresses(store, tx.id)
    client, name = seaweedfs.client, bucket.bucket
    damage(client, name, addresses[1], "flip", data[CHUNK : 2 * CHUNK])
    bad_before = bucket_object(client, name, addresses[1])
    liar = LyingPeer(os.urandom(len(data)))
    with Store.open(seed_wallet(tmp_path / "second"), bucket=bucket) as store:
        store.bucket.repair_from(lambda: [liar])
        got = b""
        with pytest.raises(CorruptChunk):
            for piece in store.read(tx.id):
                got += piece
        assert data.startswith(got) and len(got) < len(data)
        assert liar.asked  # it was asked, and refused
    assert bucket_object(client, name, addresses[1]) == bad_before


class LyingPeer:
    """A RangeSource answering every span with bytes of other data."""

    def __init__(self, other: bytes):
        self.other = other
        self.asked = 0

    def get(self, id: str, start: int = 0, end: int | None = None):
        self.asked += 1
        return iter([self.other[start:end]])


def test_peers_that_read_through_each_other_do_not_loop(tmp_path, bucket, seaweedfs):
    """A peer that answers by reading the same bad bucket object back (two nodes each other's peer
    over one bucket): the read fails at once with CorruptChunk, no request waits on itself."""
    data = os.urandom(2 * CHUNK + 10)
    with Store.open(seed_wallet(tmp_path / "node"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        addresses = chunk_addresses(store, tx.id)
    damage(seaweedfs.client, bucket.bucket, addresses[0], "flip", data[:CHUNK])
    with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as store:
        echo = EchoPeer(store)
        store.bucket.repair_from(lambda: [echo])
        with pytest.raises(CorruptChunk):
            store.read_range(tx.id, 0, 100)
        assert echo.asked == 1  # the nested read did not ask again


class EchoPeer:
    """A RangeSource that answers from the very store asking it (as a peer on the same bucket would)."""

    def __init__(self, store):
        self.store = store
        self.asked = 0

    def get(self, id: str, start: int = 0, end: int | None = None):
        self.asked += 1
        return iter([self.store.read_range(id, start, end - start)])
