"""A put that fails after its early uploads began leaves nothing for the next put on the thread to wait on."""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from permastore.protocol import ans104
from permastore.protocol.errors import ProtocolError
from permastore.store import Store
from permastore.store.bucket import layout
from permastore.store.bucket.storage import S3Storage
from tests.cli.conftest import seed_wallet
from tests.s3.test_acknowledge import bucket_keys
from tests.store.conftest import signed_tx

MB = 1024 * 1024


def test_a_put_failing_after_its_uploads_started_does_not_fail_the_next_put(tmp_path, bucket, seaweedfs):
    with Store.open(seed_wallet(tmp_path / "node"), bucket=bucket) as store:
        started = []
        real_early = store.bucket.early_uploads
        store.bucket.early_uploads = lambda: started.append(real_early()) or started[-1]  # see what the put began
        # A large item whose data does not match its signature: refused only once all of it is
        # streamed in, after a span of its chunks was sent to a bucket that is unreachable then.
        item = bytearray(ans104.build_item(store.signer, os.urandom(5 * MB), []))
        item[-1] ^= 0x01
        reachable = store.bucket.storage
        store.bucket.storage = S3Storage("http://127.0.0.1:9", bucket.bucket)  # discard port: refused
        with pytest.raises(ProtocolError):
            store.put_item(bytes(item))
        (early,) = started
        concurrent.futures.wait(early.futures)  # the upload that had begun has failed by now
        store.bucket.storage = reachable

        # The bucket is back: a put on the same thread that streams nothing in (a tx without data)
        # must be acknowledged on its own merits, not fail on the refused item's uploads.
        empty = signed_tx(store.signer, b"")
        info = store.put_tx(empty)
        assert info.id == empty.id
        headers = [layout.parse_header_key("", k)[1] for k in bucket_keys(seaweedfs.client, bucket.bucket, layout.HEADERS)]
        assert headers == [empty.id]
        # Nothing of the refused item is noted as being in the bucket.
        chunks = store.db.execute("SELECT COUNT(*) FROM bucket_chunks").fetchone()[0]
        assert chunks == 0

        # And a normal put with data after it is published whole and reads back.
        data = os.urandom(5 * MB)
        tx = signed_tx(store.signer, data)
        store.put_tx(tx, data)
        assert b"".join(store.read(tx.id)) == data
    with Store.open(seed_wallet(tmp_path / "other"), bucket=bucket) as other:
        assert b"".join(other.read(tx.id)) == data  # from the bucket alone
