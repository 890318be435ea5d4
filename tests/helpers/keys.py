"""The conformance vectors' test wallet (fixtures/vectors, see its README), and data folders seeded with it.

A fresh RSA-4096 key costs seconds; every test node uses this one instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors"
ARWEAVE_VECTORS = VECTORS / "arweave"
KEY_ADDRESS = "fOVzBRTBnyt4VrUUYadBH8yras_-jhgpmNgg-5b3vEw"
KEYFILE = ARWEAVE_VECTORS / f"arweave-keyfile-{KEY_ADDRESS}.json"


def load_jwk() -> dict:
    """Return the test wallet's JWK (a test key only)."""
    return json.loads(KEYFILE.read_text())


def seed_wallet(data_dir: Path, jwk: dict | None = None) -> Path:
    """Given a data folder (and a JWK, the test wallet by default), put it there as the node wallet (0600)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "wallet.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(jwk if jwk is not None else load_jwk(), out)
    return data_dir
