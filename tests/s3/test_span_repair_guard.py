"""A span rebuild asks peers for its other chunks under the same guard as any repaired chunk: one
no peer could give is not asked again for RETRY_AFTER_S, so re-reading a chunk of a span that
cannot be rebuilt does not turn every read into requests to every peer for the others."""

from __future__ import annotations

import os

from permastore.store import Store
from tests.cli.conftest import seed_wallet
from tests.s3.test_corrupt_bucket import chunk_addresses
from tests.s3.test_repair import damage, place
from tests.store.conftest import signed_tx

CHUNK = 262144


class PeerLackingOne:
    """A RangeSource answering from a Store off the bucket, except for the chunk starting at
    `lacking` (as a peer that holds only part of the object); counts requests by start offset."""

    def __init__(self, store: Store, lacking: int):
        self.store = store
        self.lacking = lacking
        self.asked: dict[int, int] = {}

    def get(self, id: str, start: int = 0, end: int | None = None):
        self.asked[start] = self.asked.get(start, 0) + 1
        if start == self.lacking:
            raise OSError("404: not held here")
        return iter([self.store.read_range(id, start, (end or 0) - start)])


def test_a_span_chunk_no_peer_had_is_not_asked_again_by_the_next_read(tmp_path, bucket, seaweedfs):
    data = os.urandom(3 * CHUNK + 10)  # four chunks, one span
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        places = [place(store, address) for address in chunk_addresses(store, tx.id)]
    assert len({key for key, _ in places}) == 1
    with Store.open(seed_wallet(tmp_path / "peer"), bucket=False) as peer_store:
        peer_store.put_tx(tx, data)
        peer = PeerLackingOne(peer_store, lacking=CHUNK)  # chunk 1 of the tx
        with Store.open(seed_wallet(tmp_path / "reader"), bucket=bucket) as reader:  # learns the tx
            damage(seaweedfs.client, bucket.bucket, places[0], "delete")  # the span: every chunk of it
            reader.bucket.repair_from(lambda: [peer])
            for _ in range(2):  # each read gets chunk 0 from the peer; the span cannot be rebuilt
                assert reader.read_range(tx.id, 0, 100) == data[:100]
            assert peer.asked[0] == 2
            assert peer.asked[CHUNK] == 1  # chunk 1, which the peer lacks: asked by the first rebuild only
