"""API keys: bound to an address, stored only as a hash."""

import sqlite3

import pytest

from inference.keys import InvalidKey, KeyStore, key_hash

ADDRESS = "x" * 43


@pytest.fixture
def keys(tmp_path):
    keys = KeyStore.open(tmp_path)
    yield keys
    keys.close()


def test_created_key_resolves_to_its_address(keys):
    key = keys.create(ADDRESS)
    assert key.startswith("psk_")
    assert keys.address_for(key) == ADDRESS


def test_only_a_hash_is_stored(keys, tmp_path):
    key = keys.create(ADDRESS, label="laptop")
    db = sqlite3.connect(tmp_path / "keys.sqlite")
    dump = "\n".join(db.iterdump())
    assert key not in dump
    assert key[4:] not in dump
    assert key_hash(key) in dump


def test_unknown_malformed_and_revoked_keys_resolve_to_nothing(keys):
    key = keys.create(ADDRESS)
    assert keys.address_for(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.address_for("not a key") is None
    assert keys.address_for("") is None
    assert keys.revoke(key) is True
    assert keys.address_for(key) is None
    assert keys.revoke(key) is False


def test_each_key_is_new(keys):
    assert keys.create(ADDRESS) != keys.create(ADDRESS)
    assert keys.count() == 2


def test_address_must_look_like_a_wallet_address(keys):
    with pytest.raises(InvalidKey, match="43 base64url"):
        keys.create("short")
    with pytest.raises(InvalidKey):
        keys.create("+" * 43)
    assert keys.count() == 0
