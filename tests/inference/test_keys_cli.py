"""`permastore keys create`: prints a key that the node then accepts; stores only its hash."""

from __future__ import annotations

import subprocess
import sys

from inference.keys import KeyStore

ADDRESS = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def _permastore(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "permastore.cli.main", *args],
        capture_output=True, text=True, timeout=120,
    )


def test_keys_create_prints_a_key_bound_to_the_address(tmp_path):
    data = tmp_path / "data"
    done = _permastore("--data", str(data), "keys", "create", "--address", ADDRESS, "--label", "ci")
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("psk_")
    keys = KeyStore.open(data)
    try:
        assert keys.address_for(key) == ADDRESS
    finally:
        keys.close()
    assert key.encode() not in (data / "keys.sqlite").read_bytes()


def test_keys_create_defaults_to_the_node_wallet(tmp_path):
    from permastore.protocol.wallet import address_of
    from permastore.store import Store

    data = tmp_path / "data"
    done = _permastore("--data", str(data), "keys", "create")
    assert done.returncode == 0, done.stderr
    store = Store.open(data)
    try:
        node_address = address_of(store.signer.owner)
    finally:
        store.close()
    keys = KeyStore.open(data)
    try:
        assert keys.address_for(done.stdout.strip()) == node_address
    finally:
        keys.close()


def test_keys_create_refuses_a_bad_address_in_one_line(tmp_path):
    done = _permastore("--data", str(tmp_path / "data"), "keys", "create", "--address", "not-an-address")
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "43 base64url" in done.stderr
    assert "Traceback" not in done.stderr
