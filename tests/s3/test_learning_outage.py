"""The bucket going away while a node learns an object's span chunks is an outage, not a bad
chunk: no peer is asked to repair it and no span is rebuilt; the header is kept, and the object
is learnt once the bucket answers again."""

from __future__ import annotations

import os

from permastore.protocol import ans104
from permastore.store import Store
from permastore.store.bucket import layout
from permastore.store.bucket.storage import BucketError
from tests.cli.conftest import seed_wallet
from tests.s3.test_learning_retry import put_item_on
from tests.s3.test_repair import bucket_object

CHUNK = 262144


class OutageStorage:
    """The node's real bucket storage, unreachable while `down`: reads of span objects and every
    write fail as obstore's errors do when the endpoint does not answer (BucketError)."""

    def __init__(self, real, prefix: str):
        self.real = real
        self.spans = prefix + layout.SPANS
        self.down = False
        self.refused = 0

    def _outage(self, what: str) -> None:
        if self.down:
            self.refused += 1
            raise BucketError(f"{what}: connection refused (the bucket is down)")

    def get_range(self, key: str, start: int, end: int):
        if key.startswith(self.spans):
            self._outage(f"GET {key}")
        return self.real.get_range(key, start, end)

    def put(self, key: str, data: bytes) -> None:
        self._outage(f"PUT {key}")
        self.real.put(key, data)

    def put_if_absent(self, key: str, data) -> bool:
        self._outage(f"PUT {key}")
        return self.real.put_if_absent(key, data)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


class CountingPeer:
    """A RangeSource answering from a Store off the bucket that holds the object; counts requests."""

    def __init__(self, store: Store):
        self.store = store
        self.asked = 0

    def get(self, id: str, start: int = 0, end: int | None = None):
        self.asked += 1
        return iter([self.store.read_range(id, start, (end or 0) - start)])


def test_a_bucket_outage_while_learning_a_span_chunk_repairs_nothing_and_is_learnt_later(tmp_path, bucket, seaweedfs):
    data = os.urandom(3 * CHUNK + 100)
    with Store.open(seed_wallet(tmp_path / "peer"), bucket=False) as peer_store:
        item = ans104.build_item(peer_store.signer, data, [])
        peer_store.put_item(item)
        peer = CountingPeer(peer_store)
        with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as reader:  # nothing to learn yet
            outage = OutageStorage(reader.bucket.storage, reader.bucket.prefix)
            reader.bucket.storage = outage
            reader.bucket.repair_from(lambda: [peer])
            id, places = put_item_on(seed_wallet(tmp_path / "first"), bucket, item)
            spans = {key: bucket_object(seaweedfs.client, bucket.bucket, key) for key, _ in places}
            assert all(key.startswith(layout.SPANS) for key in spans)

            outage.down = True
            learnt = reader.learn_from_bucket()
            assert outage.refused > 0  # it did try to read the span
            assert peer.asked == 0  # an outage is not a bad chunk: no repair from peers
            assert learnt == 0 and reader.info(id) is None  # not learnt, and not refused for good
            assert {key: bucket_object(seaweedfs.client, bucket.bucket, key) for key in spans} == spans

            outage.down = False
            assert reader.learn_from_bucket() == 1
            assert b"".join(reader.read(id)) == data
            assert peer.asked == 0  # every chunk came from the bucket
