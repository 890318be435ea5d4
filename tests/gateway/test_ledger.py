"""Balances in SQLite (gateway.ledger)."""

import pytest

from gateway.ledger import InsufficientFunds, Ledger

ALICE = "a" * 43
BOB = "b" * 43


def test_mint_transfer_and_reward(tmp_path):
    ledger = Ledger(tmp_path)
    assert ledger.balance(ALICE) == 0
    assert ledger.mint(ALICE, 1000) == 1000
    ledger.apply_tx(ALICE, "t" * 43, BOB, 300, 100)
    assert ledger.balance(ALICE) == 600
    assert ledger.balance(BOB) == 300
    assert ledger.last_tx(ALICE) == "t" * 43
    assert ledger.last_tx(BOB) == ""
    ledger.close()
    reopened = Ledger(tmp_path)  # survives a restart
    assert reopened.balance(ALICE) == 600


def test_transfer_without_funds_changes_nothing(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.mint(ALICE, 100)
    with pytest.raises(InsufficientFunds):
        ledger.apply_tx(ALICE, "t" * 43, BOB, 100, 1)
    assert ledger.balance(ALICE) == 100
    assert ledger.balance(BOB) == 0
    assert ledger.last_tx(ALICE) == ""


def test_data_tx_from_unfunded_wallet_is_accepted(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.apply_tx(ALICE, "t" * 43, "", 0, 5000)
    assert ledger.balance(ALICE) == 0
    assert ledger.last_tx(ALICE) == "t" * 43


def test_balances_beyond_64_bits(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.mint(ALICE, 10**25)
    ledger.mint(ALICE, 10**25)
    assert ledger.balance(ALICE) == 2 * 10**25


def test_digests(tmp_path):
    ledger = Ledger(tmp_path)
    assert ledger.digest(ALICE) is None
    ledger.set_digest(ALICE, b"\x01" * 32)
    assert ledger.digest(ALICE) == b"\x01" * 32
