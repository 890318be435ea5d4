"""Fixtures for store tests: a real Store in a tmp folder, with a pre-made node wallet
(the vectors' test key) so that each test does not spend seconds generating RSA-4096."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from permastore.protocol.signers import Ed25519Signer, RsaSigner
from permastore.protocol.tags import Tag
from permastore.protocol.tx import Transaction, sign
from permastore.store import Store

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors" / "arweave"
KEYFILE = VECTORS / "arweave-keyfile-fOVzBRTBnyt4VrUUYadBH8yras_-jhgpmNgg-5b3vEw.json"


@pytest.fixture(scope="session")
def jwk() -> dict:
    if not KEYFILE.exists():
        pytest.fail(f"conformance vectors not found at {VECTORS}")
    return json.loads(KEYFILE.read_text())


def seed_wallet(data_dir: Path, jwk: dict) -> Path:
    """Given a data folder and a JWK, put it there as the node wallet (0600); return the folder."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "wallet.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(jwk, out)
    return data_dir


@pytest.fixture
def data_dir(tmp_path, jwk) -> Path:
    return seed_wallet(tmp_path / "data", jwk)


@pytest.fixture
def store(data_dir):
    opened = Store.open(data_dir)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def rsa_signer(jwk) -> RsaSigner:
    return RsaSigner(jwk)


@pytest.fixture(scope="session")
def ed_signer() -> Ed25519Signer:
    return Ed25519Signer(bytes(range(32)))


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
