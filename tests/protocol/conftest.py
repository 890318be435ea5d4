"""Locate the conformance vectors copied into the project (fixtures/vectors, see its README)."""

from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "vectors"
ARWEAVE = VECTORS / "arweave"


@pytest.fixture(scope="session")
def arweave_vectors() -> Path:
    """Return the folder of Arweave vectors; fail loudly when it is missing."""
    if not ARWEAVE.is_dir():
        pytest.fail(f"conformance vectors not found at {ARWEAVE}")
    return ARWEAVE


KEYFILE = "arweave-keyfile-fOVzBRTBnyt4VrUUYadBH8yras_-jhgpmNgg-5b3vEw.json"


@pytest.fixture(scope="session")
def test_jwk(arweave_vectors) -> dict:
    """Return the vectors' test RSA-4096 keyfile (a test key only)."""
    import json

    return json.loads((arweave_vectors / KEYFILE).read_text())
