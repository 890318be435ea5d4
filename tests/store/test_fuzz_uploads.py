"""Issue 7 point 5: every way a stranger's bytes reach the store (put_item streaming, bundles
and nested bundles inside a validly signed item), fuzzed with hypothesis against a real Store.

Whatever comes in, a put either stores or raises a ProtocolError / StoreError; every item the
store indexed verifies; the store opens again and fsck finds no damage.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from permastore.protocol import ans104, bundle
from permastore.protocol.errors import ProtocolError
from permastore.protocol.signers import Ed25519Signer
from permastore.protocol.tags import Tag
from permastore.store import Store, StoreError
from tests.helpers.keys import seed_wallet
from tests.protocol.test_fuzz_parsers import FUZZ, mutated

from .hostile import BUNDLE_TAGS, bundle_item, forged_rsa_item

ED = Ed25519Signer(bytes(range(32)))
LEAVES = [ans104.build_item(ED, f"leaf {i}".encode(), [Tag(b"i", str(i).encode())]) for i in range(3)]
INNER = bundle.build_bundle([LEAVES[0], forged_rsa_item(bytes(512)), LEAVES[1]])
OUTER = bundle.build_bundle([LEAVES[2], ans104.build_item(ED, INNER, BUNDLE_TAGS)])
STORE_FUZZ = settings(FUZZ, max_examples=max(FUZZ.max_examples // 4, 20), suppress_health_check=list(HealthCheck))


class FuzzedStore:
    """One real data folder for a whole hypothesis run (examples share it, as uploads share a node)."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = seed_wallet(Path(self.tmp.name) / "data")
        self.store = Store.open(self.root)

    def put(self, raw: bytes) -> None:
        try:
            self.store.put_item(io.BytesIO(raw))
        except (ProtocolError, StoreError):
            pass

    def check_and_close(self) -> None:
        ids = [row[0] for row in self.store.db.execute("SELECT id FROM objects").fetchall()]
        for object_id in ids:
            assert ans104.verify_item(b"".join(self.store.item_bytes(object_id))).id == object_id
        self.store.close()
        with Store.open(self.root) as reopened:
            report = reopened.fsck()
            assert report.ok, report.failures
        self.tmp.cleanup()


def test_mutated_items_and_bundles_posted_as_items():
    node = FuzzedStore()

    @STORE_FUZZ
    @given(mutated([bundle_item(ED, [LEAVES[0], LEAVES[1]]), LEAVES[0], ans104.build_item(ED, OUTER, BUNDLE_TAGS)]))
    def run(raw):
        node.put(raw)

    run()
    node.check_and_close()


def test_mutated_bundles_inside_validly_signed_bundle_items():
    """The signature holds, so the item is stored; what is inside is a stranger's bytes."""
    node = FuzzedStore()

    @STORE_FUZZ
    @given(mutated([OUTER, INNER, bundle.build_bundle(LEAVES)]))
    def run(data):
        node.put(ans104.build_item(ED, data, BUNDLE_TAGS))

    run()
    node.check_and_close()


def test_arbitrary_bytes_posted_as_items():
    node = FuzzedStore()

    @STORE_FUZZ
    @given(st.binary(max_size=4096))
    def run(raw):
        node.put(raw)

    run()
    node.check_and_close()
