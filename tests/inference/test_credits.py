"""The credit ledger: reserve, charge, refund, and no negative balance under races."""

import threading

import pytest

from inference.credits import CreditError, CreditLedger, InsufficientCredit, UnknownReservation

ADDRESS = "A" * 43
OTHER = "B" * 43


@pytest.fixture
def ledger(tmp_path):
    ledger = CreditLedger.open(tmp_path)
    yield ledger
    ledger.close()


def test_unknown_address_has_zero_balance(ledger):
    assert ledger.balance(ADDRESS) == 0


def test_credit_adds_up(ledger):
    ledger.credit(ADDRESS, 100)
    ledger.credit(ADDRESS, 50)
    assert ledger.balance(ADDRESS) == 150
    assert ledger.balance(OTHER) == 0


def test_reserve_takes_credit_then_charge_keeps_it_taken(ledger):
    ledger.credit(ADDRESS, 100)
    reservation = ledger.reserve(ADDRESS, 30)
    assert ledger.balance(ADDRESS) == 70
    ledger.charge(reservation)
    assert ledger.balance(ADDRESS) == 70
    assert ledger.reservation_state(reservation.id) == "charged"


def test_refund_gives_credit_back_once(ledger):
    ledger.credit(ADDRESS, 100)
    reservation = ledger.reserve(ADDRESS, 30)
    ledger.refund(reservation)
    assert ledger.balance(ADDRESS) == 100
    with pytest.raises(UnknownReservation):
        ledger.refund(reservation)
    with pytest.raises(UnknownReservation):
        ledger.charge(reservation)
    assert ledger.balance(ADDRESS) == 100


def test_insufficient_credit_takes_nothing_and_says_what_is_needed(ledger):
    ledger.credit(ADDRESS, 10)
    with pytest.raises(InsufficientCredit) as info:
        ledger.reserve(ADDRESS, 11)
    assert (info.value.needed, info.value.balance) == (11, 10)
    assert ledger.balance(ADDRESS) == 10
    with pytest.raises(InsufficientCredit):
        ledger.reserve(OTHER, 1)


def test_free_calls_reserve_nothing(ledger):
    reservation = ledger.reserve(OTHER, 0)
    ledger.charge(reservation)
    assert ledger.balance(OTHER) == 0


def test_bad_amounts_are_refused(ledger):
    for amount in (-1, 1.5, True, 2**63):
        with pytest.raises(CreditError):
            ledger.credit(ADDRESS, amount)
    assert ledger.balance(ADDRESS) == 0


def test_concurrent_reservations_never_overspend(tmp_path):
    """Threads on one ledger and a second connection (another process's view) race."""
    first = CreditLedger.open(tmp_path)
    second = CreditLedger.open(tmp_path)
    first.credit(ADDRESS, 1000)
    won, lost = [], []
    start = threading.Barrier(16)

    def spend(ledger):
        start.wait()
        for _ in range(10):
            try:
                won.append(ledger.reserve(ADDRESS, 7))
            except InsufficientCredit:
                lost.append(1)

    threads = [threading.Thread(target=spend, args=(first if i % 2 else second,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1000 // 7
    assert len(lost) == 160 - 1000 // 7
    assert first.balance(ADDRESS) == 1000 - 7 * (1000 // 7) >= 0
    first.close()
    second.close()


def test_open_reservations_are_refunded_after_a_restart(tmp_path):
    ledger = CreditLedger.open(tmp_path)
    ledger.credit(ADDRESS, 50)
    ledger.reserve(ADDRESS, 20)
    ledger.close()  # the herder died mid-call
    reopened = CreditLedger.open(tmp_path)
    assert reopened.balance(ADDRESS) == 30
    assert reopened.refund_open_reservations() == 1
    assert reopened.balance(ADDRESS) == 50
    reopened.close()
