"""Fixtures for store tests: a real Store in a tmp folder, with a pre-made node wallet
(the vectors' test key) so that each test does not spend seconds generating RSA-4096."""

from __future__ import annotations

from pathlib import Path

import pytest

from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign
from permastore.store import Store
from tests.helpers.keys import seed_wallet


@pytest.fixture
def data_dir(tmp_path, jwk) -> Path:
    return seed_wallet(tmp_path / "data", jwk)


@pytest.fixture
def store(data_dir):
    opened = Store.open(data_dir)
    yield opened
    opened.close()


def tags(**pairs) -> list[Tag]:
    return [Tag(name.replace("_", "-").encode(), value.encode()) for name, value in pairs.items()]


def signed_tx(signer, data: bytes, tag_list=(), **fields) -> Transaction:
    """Return a signed format-2 tx for data (data_root set, data not inline)."""
    unsigned = Transaction(format=2, data=data, data_size=len(data), tags=list(tag_list), **fields)
    tx = sign(unsigned, signer)
    return Transaction(**{**tx.__dict__, "data": b""})


def pseudo_random(size: int, seed: int = 1) -> bytes:
    """Deterministic incompressible bytes."""
    import random

    return random.Random(seed).randbytes(size)
