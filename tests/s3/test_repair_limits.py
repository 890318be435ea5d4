"""Repair from peers stays within its limit of requests at once, a read that finds every slot
taken fails at once with a clear 503, and a peer's answer is always closed."""

from __future__ import annotations

import os
import threading
import time

import pytest

from permastore.sources.base import DataStream
from permastore.store import Store
from permastore.store.bucket import repair
from permastore.store.bucket.storage import BucketError
from tests.cli.conftest import seed_wallet
from tests.s3.test_corrupt_bucket import chunk_addresses
from tests.s3.test_repair import damage, place
from tests.store.conftest import signed_tx

CHUNK = 262144
SYNC_S = 60  # how long a test waits for its own threads to get somewhere (never reached when all is well)


class ClosableAnswer(DataStream):
    """A peer's answer that says whether it was closed (as an HTTP response must be)."""

    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


class GatedPeer:
    """A RangeSource answering from a Store off the bucket; requests for chunks in `held` wait for
    `release`. It counts requests in flight, and the most seen at once."""

    def __init__(self, store: Store, held: set[int]):
        self.store = store
        self.held = held
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight = self.most = 0
        self.answers: list[ClosableAnswer] = []

    def get(self, id: str, start: int = 0, end: int | None = None):
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            if start // CHUNK in self.held:
                self.release.wait(SYNC_S)
            answer = ClosableAnswer(id, iter([self.store.read_range(id, start, (end or 0) - start)]), None)
            self.answers.append(answer)
            return answer
        finally:
            with self.lock:
                self.in_flight -= 1


def wait_for(condition) -> None:
    deadline = time.monotonic() + SYNC_S
    while not condition():
        assert time.monotonic() < deadline, "the test's threads never got there"
        time.sleep(0.05)


def test_repairs_stay_within_the_limit_and_a_busy_one_fails_at_once(tmp_path, bucket, seaweedfs):
    data = os.urandom(20 * CHUNK + 1000)  # spans of 16 and 5 chunks
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        addresses = chunk_addresses(store, tx.id)
        places = [place(store, a) for a in addresses]
    for index in (0, 1, 2, 3, 4, 17):
        damage(seaweedfs.client, bucket.bucket, places[index], "flip")
    with Store.open(seed_wallet(tmp_path / "peer"), bucket=False) as peer_store:
        peer_store.put_tx(tx, data)
        peer = GatedPeer(peer_store, held={0, 1, 2, 3})
        with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as store:
            store.bucket.repair_from(lambda: [peer])
            got: dict[int, bytes] = {}
            readers = [threading.Thread(target=lambda i=i: got.__setitem__(i, store.read_range(tx.id, i * CHUNK, 100)))
                       for i in range(4)]  # fmt: skip
            for thread in readers:
                thread.start()
            try:
                wait_for(lambda: peer.in_flight == repair.MAX_REPAIRS_AT_ONCE)  # every slot held by a slow peer
                # Rebuilding the second span needs chunk 17 from a peer: that request waits for a slot too.
                span = store.bucket.location(addresses[17])[0]
                assert store.bucket.repairer.rebuild_span(span, {}, tx.id) is False  # left for later
                assert peer.most == repair.MAX_REPAIRS_AT_ONCE
                # A read of another bad chunk now fails at once, saying why, instead of holding its thread.
                with pytest.raises(BucketError, match="busy"):
                    store.read_range(tx.id, 4 * CHUNK, 100)
            finally:
                peer.release.set()
                for thread in readers:
                    thread.join(SYNC_S)
            assert got == {i: data[i * CHUNK : i * CHUNK + 100] for i in range(4)}  # repaired once peers answered
            assert store.read_range(tx.id, 4 * CHUNK, 100) == data[4 * CHUNK : 4 * CHUNK + 100]  # a retry works
            assert b"".join(store.read(tx.id)) == data
            assert peer.most == repair.MAX_REPAIRS_AT_ONCE
            assert peer.answers and all(answer.closed for answer in peer.answers)


class OverlongPeer:
    """A RangeSource answering more bytes than asked, or failing halfway through its answer."""

    def __init__(self, fail: bool):
        self.fail = fail
        self.answers: list[ClosableAnswer] = []

    def get(self, id: str, start: int = 0, end: int | None = None):
        def pieces():
            yield b"x" * ((end or 0) - start)
            if self.fail:
                raise ConnectionError("peer went away")
            yield b"more than asked"

        answer = ClosableAnswer(id, pieces(), None)
        self.answers.append(answer)
        return answer


def test_a_peer_answer_is_closed_when_it_is_too_long_or_fails(tmp_path, bucket, seaweedfs):
    data = os.urandom(2 * CHUNK + 10)
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        where = place(store, chunk_addresses(store, tx.id)[0])
    damage(seaweedfs.client, bucket.bucket, where, "flip")
    peers = [OverlongPeer(fail=False), OverlongPeer(fail=True)]
    with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as store:
        store.bucket.repair_from(lambda: peers)
        with pytest.raises(Exception, match="chunk"):
            store.read_range(tx.id, 0, 100)
    assert all(peer.answers and all(a.closed for a in peer.answers) for peer in peers)


def test_a_read_over_http_while_repairs_are_busy_is_a_503_with_its_reason(tmp_path, bucket, seaweedfs, monkeypatch):
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.config import GatewayConfig

    data = os.urandom(6 * CHUNK + 1000)
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        places = [place(store, a) for a in chunk_addresses(store, tx.id)]
    for index in range(5):
        damage(seaweedfs.client, bucket.bucket, places[index], "flip")
    monkeypatch.setenv("PERMASTORE_S3_ENDPOINT", bucket.endpoint)
    monkeypatch.setenv("PERMASTORE_S3_BUCKET", bucket.bucket)
    with Store.open(seed_wallet(tmp_path / "peer"), bucket=False) as peer_store:
        peer_store.put_tx(tx, data)
        peer = GatedPeer(peer_store, held={0, 1, 2, 3})
        app = create_app(GatewayConfig(data_dir=seed_wallet(tmp_path / "node"), mine_interval=0))
        with TestClient(app, raise_server_exceptions=False) as client:
            store = app.state.node.store
            store.bucket.repair_from(lambda: [peer])
            readers = [threading.Thread(target=store.read_range, args=(tx.id, i * CHUNK, 100)) for i in range(4)]
            for thread in readers:
                thread.start()
            try:
                wait_for(lambda: peer.in_flight == repair.MAX_REPAIRS_AT_ONCE)
                busy = client.get(f"/raw/{tx.id}", headers={"Range": f"bytes={4 * CHUNK}-{4 * CHUNK + 99}"})
            finally:
                peer.release.set()
                for thread in readers:
                    thread.join(SYNC_S)
            assert busy.status_code == 503, busy.text
            assert "busy" in busy.json()["error"] and busy.headers["Retry-After"]
            again = client.get(f"/raw/{tx.id}", headers={"Range": f"bytes={4 * CHUNK}-{4 * CHUNK + 99}"})
            assert again.status_code == 206 and again.content == data[4 * CHUNK : 4 * CHUNK + 100]
