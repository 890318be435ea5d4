"""Credit ledger: a balance per wallet address, reservations per call, Credit-Notice records.

A call first *reserves* its fee (taken from the balance at once, so two concurrent calls
can never spend the same credit), then is *charged* on success or *refunded* on failure.
The ledger is its own SQLite file under the data folder (`data/credits.sqlite`).
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
import uuid
from dataclasses import dataclass

from inference.sqlite_file import SqliteFile
from inference.store_types import InferenceStore
from permastore.protocol.tags import Tag
from permastore.store import database

LEDGER_FILE = "credits.sqlite"
MAX_AMOUNT = 2**62  # SQLite INTEGER is signed 64-bit; stay clear of overflow on sums

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    state TEXT NOT NULL CHECK (state IN ('reserved', 'charged', 'refunded')),
    created_at REAL NOT NULL,
    settled_at REAL
);
CREATE TABLE IF NOT EXISTS credit_notices (
    record_id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    amount INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""


class CreditError(Exception):
    """Base of ledger errors."""


class InsufficientCredit(CreditError):
    """The balance cannot cover a reservation; nothing was taken."""

    def __init__(self, address: str, needed: int, balance: int):
        super().__init__(f"insufficient credit for {address}: needs {needed}, has {balance}")
        self.address = address
        self.needed = needed
        self.balance = balance


class UnknownReservation(CreditError):
    """A charge or refund named a reservation that does not exist or is already settled."""


@dataclass(frozen=True)
class Reservation:
    """A fee held for one call until it is charged or refunded."""

    id: str
    address: str
    amount: int


def check_amount(amount: object) -> None:
    """Raise CreditError unless amount is an integer the ledger can hold."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise CreditError("amount must be an integer")
    if amount < 0 or amount > MAX_AMOUNT:
        raise CreditError(f"amount must be between 0 and {MAX_AMOUNT}")


class CreditLedger(SqliteFile):
    """The credit ledger of one node. Thread-safe; safe across processes via SQLite locks."""

    FILE_NAME = LEDGER_FILE
    SCHEMA = SCHEMA

    def _transaction(self):
        """A write transaction under the ledger lock (IMMEDIATE: read-then-write is atomic across processes)."""
        return database.immediate(self._db, self._lock)

    def balance(self, address: str) -> int:
        """Given an address, return its spendable balance (0 when unknown)."""
        with self._lock:
            row = self._db.execute(
                "SELECT balance FROM accounts WHERE address = ?", (address,)
            ).fetchone()
        return row[0] if row else 0

    def credit(self, address: str, amount: int, store: InferenceStore | None = None) -> str | None:
        """Add credit to an address; return the Credit-Notice record ID (None without store).

        The notice is written first: a credit is only applied once its record exists, so
        the ledger never holds credit that no record explains.
        """
        check_amount(amount)
        record_id = _write_credit_notice(store, address, amount) if store is not None else None
        with self._transaction() as db:
            db.execute(
                "INSERT INTO accounts (address, balance) VALUES (?, ?) "
                "ON CONFLICT(address) DO UPDATE SET balance = balance + excluded.balance",
                (address, amount),
            )
            if record_id is not None:
                db.execute(
                    "INSERT INTO credit_notices (record_id, address, amount, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    (record_id, address, amount, time.time()),
                )
        return record_id

    def reserve(self, address: str, amount: int) -> Reservation:
        """Take `amount` from the balance into a new reservation; raise InsufficientCredit.

        The conditional UPDATE is the guard that keeps balances non-negative when calls
        race: only one of two concurrent reservations can see the same credit.
        """
        check_amount(amount)
        reservation = Reservation(uuid.uuid4().hex, address, amount)
        with self._transaction() as db:
            if amount > 0:
                updated = db.execute(
                    "UPDATE accounts SET balance = balance - ? WHERE address = ? AND balance >= ?",
                    (amount, address, amount),
                ).rowcount
                if updated != 1:
                    row = db.execute(
                        "SELECT balance FROM accounts WHERE address = ?", (address,)
                    ).fetchone()
                    raise InsufficientCredit(address, amount, row[0] if row else 0)
            db.execute(
                "INSERT INTO reservations (id, address, amount, state, created_at) "
                "VALUES (?, ?, ?, 'reserved', ?)",
                (reservation.id, address, amount, time.time()),
            )
        return reservation

    def charge(self, reservation: Reservation) -> None:
        """Settle a reservation as spent (the call succeeded)."""
        with self._transaction() as db:
            self._settle(db, reservation.id, "charged")

    def refund(self, reservation: Reservation) -> None:
        """Settle a reservation as refunded: its amount goes back to the balance."""
        with self._transaction() as db:
            amount = self._settle(db, reservation.id, "refunded")
            db.execute(
                "UPDATE accounts SET balance = balance + ? WHERE address = ?",
                (amount, reservation.address),
            )

    def _settle(self, db: sqlite3.Connection, reservation_id: str, state: str) -> int:
        row = db.execute(
            "SELECT amount FROM reservations WHERE id = ? AND state = 'reserved'",
            (reservation_id,),
        ).fetchone()
        if row is None:
            raise UnknownReservation(f"no open reservation {reservation_id}")
        db.execute(
            "UPDATE reservations SET state = ?, settled_at = ? WHERE id = ?",
            (state, time.time(), reservation_id),
        )
        return row[0]

    def refund_open_reservations(self) -> int:
        """Refund every reservation left open (the herder restarted mid-call); return count.

        Only the process that owns the calls (the herder, at start) may do this.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT id, address, amount FROM reservations WHERE state = 'reserved'"
            ).fetchall()
        for reservation_id, address, amount in rows:
            try:
                self.refund(Reservation(reservation_id, address, amount))
            except UnknownReservation:
                pass  # settled by someone else meanwhile
        return len(rows)

    def reservation_state(self, reservation_id: str) -> str | None:
        """Given a reservation ID, return its state or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT state FROM reservations WHERE id = ?", (reservation_id,)
            ).fetchone()
        return row[0] if row else None


def credit_notice_tags(address: str, amount: int) -> list[tuple[str, str]]:
    """Given a credit, return the tags of its Credit-Notice record."""
    return [
        ("Type", "Credit-Notice"),
        ("Action", "Credit-Notice"),
        ("Recipient", address),
        ("Quantity", str(amount)),
    ]


def _write_credit_notice(store: InferenceStore, address: str, amount: int) -> str:
    """Write a signed Credit-Notice data item to the store; return its ID."""
    tags = [Tag(name.encode(), value.encode()) for name, value in credit_notice_tags(address, amount)]
    body = json.dumps({"recipient": address, "quantity": str(amount)}, sort_keys=True).encode()
    info = store.put_data(io.BytesIO(body), tags=tags, content_type="application/json")
    return info.id
