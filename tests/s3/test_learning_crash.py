"""A node killed while it learns an object never holds a chunk noted as in the bucket without its place there."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

from permastore.protocol import ans104
from permastore.store import Store
from permastore.store.reader import BUCKET_SEGMENT
from tests.cli.conftest import seed_wallet

MB = 1024 * 1024

# Learning, killed (os._exit: no cleanup, as a crash) the moment the learned item's put is
# committed, before anything else the learner does for it.
CRASH_AFTER_PUT = textwrap.dedent("""
    import os, sys
    from permastore.store import Store
    from permastore.store.bucket import BucketSettings
    from permastore.store.store import Store as StoreClass

    real_put_item = StoreClass.put_item

    def put_item_then_crash(self, *args, **kwargs):
        real_put_item(self, *args, **kwargs)
        os._exit(9)

    StoreClass.put_item = put_item_then_crash
    Store.open(sys.argv[1], bucket=BucketSettings(sys.argv[2], sys.argv[3]))  # learns at open
    sys.exit("the item was not learned")
""")


def test_a_crash_right_after_a_learned_put_leaves_every_chunk_placed(tmp_path, bucket):
    data = os.urandom(5 * MB)  # its own segment (evictable), chunks in two spans
    with Store.open(seed_wallet(tmp_path / "first"), bucket=bucket) as store:
        item = ans104.build_item(store.signer, data, [])
        id = store.put_item(item).id
    second = seed_wallet(tmp_path / "second")
    crashed = subprocess.run([sys.executable, "-c", CRASH_AFTER_PUT, str(second), bucket.endpoint, bucket.bucket],
                             capture_output=True, timeout=300, cwd=os.getcwd())  # fmt: skip
    assert crashed.returncode == 9, crashed.stderr.decode()[-3000:]

    # Started again with a cache too small to keep the item: its segment goes, its data is read from the bucket.
    small = dataclasses.replace(bucket, cache_size=1 * MB)
    with Store.open(second, bucket=small) as store:
        unplaced = store.db.execute(
            "SELECT COUNT(*) FROM bucket_chunks b WHERE NOT EXISTS (SELECT 1 FROM bucket_spans s WHERE s.hash = b.hash)"
        ).fetchone()[0]
        assert unplaced == 0
        store.trim_cache()
        evicted = store.db.execute("SELECT COUNT(*) FROM chunks WHERE segment_id = ?", (BUCKET_SEGMENT,)).fetchone()[0]
        assert evicted == 20  # every chunk of the item is read from the bucket now
        assert b"".join(store.read(id)) == data
