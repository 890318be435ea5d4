"""Upstream status answers: only a well-formed confirmation counts; the ledger keeps it."""

from gateway.chain_status import parse_status
from gateway.ledger import Ledger

HASH = "h" * 64


def test_a_well_formed_status_is_a_confirmation():
    doc = {"block_height": 7, "block_indep_hash": HASH, "number_of_confirmations": 3}
    assert parse_status(doc) == (7, HASH, 3)


def test_answers_of_another_shape_say_nothing():
    good = {"block_height": 7, "block_indep_hash": HASH, "number_of_confirmations": 3}
    for broken in (
        [],
        "Pending",
        {**good, "block_height": "7"},
        {**good, "block_height": True},
        {**good, "block_height": -1},
        {**good, "number_of_confirmations": None},
        {**good, "block_indep_hash": "short"},
        {**good, "block_indep_hash": "+" * 64},
    ):
        assert parse_status(broken) is None, broken


def test_ledger_keeps_upstream_status_across_reopen(tmp_path):
    ledger = Ledger(tmp_path)
    assert ledger.upstream_status("x" * 43) is None
    ledger.set_upstream_status("x" * 43, None, 10.0)
    assert ledger.upstream_status("x" * 43) == (None, 10.0)
    ledger.set_upstream_status("x" * 43, (5, HASH, 2), 20.0)
    ledger.close()
    ledger = Ledger(tmp_path)
    assert ledger.upstream_status("x" * 43) == ((5, HASH, 2), 20.0)
    ledger.close()
