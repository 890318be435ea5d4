"""A bad or missing bucket chunk is repaired from a peer: by `serve --peer` on a read, by `fsck --repair --peer`;
a chunk inside a span by rebuilding the whole span from verified chunks."""

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


def place(store: Store, address: bytes) -> tuple[str, int]:
    """Given a chunk's address, return the key of the bucket object holding it (its span, or
    chunks/<address> in the first layout) and its offset there."""
    where = store.bucket.location(address)
    return (layout.chunk_key("", address), 0) if where is None else (layout.span_key("", where[0]), where[1])


def bucket_object(client, name: str, key: str) -> bytes | None:
    try:
        return client.get_object(Bucket=name, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def chunk_in_bucket(client, name: str, where: tuple[str, int], size: int) -> bytes | None:
    """The bytes the bucket holds now where a chunk should be (None: its object is missing)."""
    key, offset = where
    data = bucket_object(client, name, key)
    return None if data is None else data[offset : offset + size]


def damage(client, name: str, where: tuple[str, int], how: str) -> bytes:
    """Flip a byte of a chunk inside its bucket object, truncate the object 1000 bytes into the
    chunk, or delete the object; return what the object held before."""
    key, offset = where
    good = bucket_object(client, name, key)
    assert good is not None, key
    if how == "flip":
        bad = bytearray(good)
        bad[offset + 77] ^= 0x01
        client.put_object(Bucket=name, Key=key, Body=bytes(bad))
    elif how == "truncate":
        client.put_object(Bucket=name, Key=key, Body=good[: offset + 1000])
    else:
        client.delete_object(Bucket=name, Key=key)
    return good


def test_bad_spans_are_served_and_rebuilt_from_a_peer(tmp_path, bucket, seaweedfs):
    data = os.urandom(40 * CHUNK + 1000)  # 41 chunks: three spans (16, 16, 9)
    first = seed_wallet(tmp_path / "first")
    with Store.open(first, bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        addresses = chunk_addresses(store, tx.id)
        places = [place(store, a) for a in addresses]
    assert len({key for key, _ in places}) == 3 and all(key.startswith(layout.SPANS) for key, _ in places)
    peer_dir = seed_wallet(tmp_path / "peer")
    with Store.open(peer_dir, bucket=False) as store:  # a node off the bucket that holds the same tx
        store.put_tx(tx, data)
    client, name = seaweedfs.client, bucket.bucket
    originals = {}
    for index, how in ((3, "flip"), (20, "truncate"), (35, "delete")):  # one of each span
        originals[places[index][0]] = damage(client, name, places[index], how)

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
        whole = httpx.get(f"{server.url}/{tx.id}", timeout=120)
        assert whole.status_code == 200 and whole.content == data
    finally:
        server.stop()
    for key, original in originals.items():  # every damaged span holds its verified bytes again, whole
        assert bucket_object(client, name, key) == original, key
    assert "rebuilt from" in (tmp_path / "serve.log").read_text()

    # Offline: fsck reports a bad chunk inside a span; fsck --repair without a copy of it leaves
    # the span as it is and reports it; fsck --repair --peer rebuilds the span; fsck is clean after.
    span_a = places[2][0]
    damage(client, name, places[2], "flip")
    bad_span = bucket_object(client, name, span_a)
    try:
        found = run_permastore("--data", second, *bucket_args, "fsck", env=env, timeout=120)
        out = found.stdout.decode()
        assert found.returncode != 0 and f"{tx.id} chunk 2: bucket span " in out, out
        alone = run_permastore("--data", second, *bucket_args, "fsck", "--repair", env=env, timeout=120)
        assert alone.returncode != 0 and f"{tx.id} chunk 2" in alone.stdout.decode()  # no copy here, no peer
        assert bucket_object(client, name, span_a) == bad_span  # left as it is
        repaired = run_permastore("--data", second, *bucket_args, "fsck", "--repair", "--peer", peer.url,
                                  env=env, timeout=120)  # fmt: skip
        out = repaired.stdout.decode()
        assert repaired.returncode == 0, (out, repaired.stderr.decode())
        assert f"{tx.id} chunk 2: repaired" in out
    finally:
        peer.stop()
    assert bucket_object(client, name, span_a) == originals[span_a]
    clean = run_permastore("--data", second, *bucket_args, "fsck", env=env, timeout=120)
    assert clean.returncode == 0, clean.stdout.decode()

    # The node that put it still holds its chunks: fsck --repair rebuilds spans from them, no peer needed.
    damage(client, name, places[20], "truncate")
    damage(client, name, places[40], "delete")
    local = run_permastore("--data", first, *bucket_args, "fsck", "--repair", env=env, timeout=120)
    out = local.stdout.decode()
    assert local.returncode == 0, out
    # fsck reads chunks in address order: the first bad one it meets in a span has the span rebuilt.
    assert any(f"{tx.id} chunk {i}: repaired" in out for i in range(20, 32)), out
    assert any(f"{tx.id} chunk {i}: repaired" in out for i in range(32, 41)), out
    for index in (20, 40):
        assert bucket_object(client, name, places[index][0]) == originals[places[index][0]]
    no_bucket = run_permastore("--data", first, "fsck", "--repair", env=env, timeout=120)
    assert no_bucket.returncode != 0 and "--s3-bucket" in no_bucket.stderr.decode()


class StorePeer:
    """A RangeSource answering from a Store off the bucket (as a peer's /raw/{id} would)."""

    def __init__(self, store: Store):
        self.store = store

    def get(self, id: str, start: int = 0, end: int | None = None):
        return iter([self.store.read_range(id, start, (end or 0) - start)])


def test_a_bad_chunk_object_of_the_first_layout_is_rewritten_from_a_peer(tmp_path, bucket, seaweedfs):
    """Objects published before spans (chunks/<BLAKE3>, a version-1 manifest) are repaired object by object."""
    data = os.urandom(3 * CHUNK + 10)
    client, name = seaweedfs.client, bucket.bucket
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        addresses = chunk_addresses(store, tx.id)
    to_first_layout(client, name, data)
    with Store.open(seed_wallet(tmp_path / "peer"), bucket=False) as peer_store:
        peer_store.put_tx(tx, data)
        with Store.open(seed_wallet(tmp_path / "second"), bucket=bucket) as store:
            where = place(store, addresses[1])
            assert where == (layout.chunk_key("", addresses[1]), 0)
            damage(client, name, where, "flip")
            store.bucket.repair_from(lambda: [StorePeer(peer_store)])
            assert b"".join(store.read(tx.id)) == data
    assert bucket_object(client, name, where[0]) == data[CHUNK : 2 * CHUNK]


def to_first_layout(client, name: str, data: bytes) -> None:
    """Rewrite the bucket's one object as a node of the first layout left it."""
    import json

    (header,) = [o["Key"] for o in client.list_objects_v2(Bucket=name, Prefix=layout.HEADERS)["Contents"]]
    body = json.loads(client.get_object(Bucket=name, Key=header)["Body"].read())
    for span in client.list_objects_v2(Bucket=name, Prefix=layout.SPANS)["Contents"]:
        client.delete_object(Bucket=name, Key=span["Key"])
    for offset, size, address, *_ in body["chunks"]:
        client.put_object(Bucket=name, Key=layout.chunk_key("", bytes.fromhex(address)), Body=data[offset : offset + size])
    old = {"v": 1, **{k: body[k] for k in ("id", "kind", "raw_header", "data_size")},
           "chunks": [entry[:4] for entry in body["chunks"]]}  # fmt: skip
    client.put_object(Bucket=name, Key=header, Body=json.dumps(old).encode())


def test_a_peer_sending_wrong_bytes_repairs_nothing(tmp_path, bucket, seaweedfs):
    """A peer whose copy differs (another object's bytes under the ID) is never written into the bucket."""
    data = os.urandom(3 * CHUNK + 10)
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        addresses = chunk_addresses(store, tx.id)
        where = place(store, addresses[1])
    client, name = seaweedfs.client, bucket.bucket
    damage(client, name, where, "flip")
    bad_before = bucket_object(client, name, where[0])
    liar = LyingPeer(os.urandom(len(data)))
    with Store.open(seed_wallet(tmp_path / "second"), bucket=bucket) as store:
        store.bucket.repair_from(lambda: [liar])
        got = b""
        with pytest.raises(CorruptChunk):
            for piece in store.read(tx.id):
                got += piece
        assert data.startswith(got) and len(got) < len(data)
        assert liar.asked  # it was asked, and refused
    assert bucket_object(client, name, where[0]) == bad_before


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
        where = place(store, chunk_addresses(store, tx.id)[0])
    damage(seaweedfs.client, bucket.bucket, where, "flip")
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
