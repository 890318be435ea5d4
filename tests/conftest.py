"""Fixtures every test folder shares: the test wallet and signers (see tests/helpers)."""

from __future__ import annotations

import pytest

from permastore.protocol.signers import Ed25519Signer, RsaSigner
from tests.helpers.keys import KEYFILE, load_jwk


@pytest.fixture(scope="session")
def jwk() -> dict:
    """The vectors' RSA-4096 test wallet."""
    if not KEYFILE.exists():
        pytest.fail(f"conformance vectors not found at {KEYFILE.parent}")
    return load_jwk()


@pytest.fixture(scope="session")
def rsa_signer(jwk) -> RsaSigner:
    return RsaSigner(jwk)


@pytest.fixture(scope="session")
def ed_signer() -> Ed25519Signer:
    return Ed25519Signer(bytes(range(32)))
