"""Locate the shared conformance vectors (../shared/vectors beside the repo)."""

from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[2] / ".." / "shared" / "vectors"
ARWEAVE = VECTORS / "arweave"


@pytest.fixture(scope="session")
def arweave_vectors() -> Path:
    """Return the folder of Arweave vectors; fail loudly when it is missing."""
    if not ARWEAVE.is_dir():
        pytest.fail(f"conformance vectors not found at {ARWEAVE}")
    return ARWEAVE
