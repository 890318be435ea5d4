"""Wallet balances and last transactions of a development node, in SQLite.

A local node has no real token economy; like arlocal it lets anyone mint test
winston (`/mint`), moves `quantity` to a tx's target and burns its `reward`.
The ledger is a file of its own (`gateway.sqlite`) so the store's schema stays the store's.
It also caches what upstreams said of the block status of txs read through them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from permastore.store import database

log = logging.getLogger("gateway.ledger")

LEDGER_FILE = "gateway.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS balances (
    address TEXT PRIMARY KEY,
    winston TEXT NOT NULL,          -- decimal string: balances exceed 64 bits
    last_tx TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS upstream_status (
    id TEXT PRIMARY KEY,            -- an L1 tx this node read through an upstream
    block_height INTEGER,           -- NULL while no upstream has confirmed it
    block_indep_hash TEXT,
    confirmations INTEGER,
    checked_at REAL NOT NULL        -- unix time of the last answer asked for
);
CREATE TABLE IF NOT EXISTS digests (
    id TEXT PRIMARY KEY,
    sha256 BLOB NOT NULL            -- of the object's full data, learnt at first full read
);
"""


class InsufficientFunds(Exception):
    """The sender cannot cover quantity + reward."""


class Ledger:
    """Given a data folder, keep balances, last txs and data digests there."""

    def __init__(self, data_dir: Path):
        path = Path(data_dir) / LEDGER_FILE
        self._db = database.connect(path, "FULL")  # balances: a commit is on disk before the answer
        self._db.executescript(SCHEMA)
        # Digests are a cache of what any full read recomputes: no fsync per first read.
        self._digest_db = database.connect(path, "NORMAL")
        self._lock = threading.Lock()  # the connections are shared by the event loop and workers

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._digest_db.close()

    def balance(self, address: str) -> int:
        """Given an address, return its balance in winston (0 when unknown)."""
        with self._lock:
            row = self._db.execute("SELECT winston FROM balances WHERE address = ?", (address,)).fetchone()
        return int(row[0]) if row else 0

    def last_tx(self, address: str) -> str:
        """Given an address, return the ID of its last accepted tx ('' when none)."""
        with self._lock:
            row = self._db.execute("SELECT last_tx FROM balances WHERE address = ?", (address,)).fetchone()
        return row[0] if row else ""

    def mint(self, address: str, winston: int) -> int:
        """Given an address and an amount, credit it and return the new balance."""
        with database.immediate(self._db, self._lock):
            new = self._balance_locked(address) + winston
            self._set_locked(address, new)
        return new

    def check_funds(self, owner_address: str, target: str, quantity: int, reward: int) -> None:
        """Given a tx's transfer, raise InsufficientFunds when the owner cannot cover it."""
        if target and quantity > 0:
            balance = self.balance(owner_address)
            if balance < quantity + reward:
                raise InsufficientFunds(
                    f"you don't have enough funds to send {quantity} (balance {balance}, reward {reward})"
                )

    def apply_tx(self, owner_address: str, tx_id: str, target: str, quantity: int, reward: int) -> None:
        """Given an accepted tx, move quantity to target, burn reward, record last_tx.

        As arlocal does: a transfer needs funds for quantity + reward (else
        InsufficientFunds); a plain data tx is accepted from an unfunded wallet and its
        reward burns what there is, so uploads work without minting first.
        """
        with database.immediate(self._db, self._lock):
            balance = self._balance_locked(owner_address)
            if target and quantity > 0:
                if balance < quantity + reward:
                    raise InsufficientFunds(
                        f"you don't have enough funds to send {quantity} (balance {balance}, reward {reward})"
                    )
                self._set_locked(target, self._balance_locked(target) + quantity)
                balance -= quantity
            self._set_locked(owner_address, max(0, balance - reward), tx_id)

    def digest(self, object_id: str) -> bytes | None:
        """Given an ID, return the SHA-256 of its full data when known."""
        with self._lock:
            row = self._digest_db.execute("SELECT sha256 FROM digests WHERE id = ?", (object_id,)).fetchone()
        return row[0] if row else None

    def set_digest(self, object_id: str, sha256: bytes) -> None:
        """Given an ID and the SHA-256 of its full data, remember it when the disk lets us.

        Best effort: a digest is a cache that the next full read learns again, so a full disk
        or a busy database never fails the read that learnt it.
        """
        try:
            with self._lock:
                self._digest_db.execute("INSERT OR IGNORE INTO digests (id, sha256) VALUES (?, ?)", (object_id, sha256))
        except (sqlite3.Error, OSError) as exc:
            log.warning("digest of %s not recorded (served anyway): %s", object_id, exc)

    def upstream_status(self, tx_id: str) -> tuple[tuple[int, str, int] | None, float] | None:
        """Given a tx ID, return ((height, indep_hash, confirmations) or None, checked_at), or None when not read through."""
        with self._lock:
            row = self._digest_db.execute(
                "SELECT block_height, block_indep_hash, confirmations, checked_at FROM upstream_status WHERE id = ?",
                (tx_id,),
            ).fetchone()
        if row is None:
            return None
        confirmed = (row[0], row[1], row[2]) if row[0] is not None else None
        return confirmed, row[3]

    def set_upstream_status(self, tx_id: str, confirmed: tuple[int, str, int] | None, checked_at: float) -> None:
        """Given a tx ID, what its upstream said ((height, indep_hash, confirmations) or None) and when, remember it."""
        height, indep_hash, confirmations = confirmed or (None, None, None)
        try:
            self._record_upstream_status(tx_id, height, indep_hash, confirmations, checked_at)
        except (sqlite3.Error, OSError) as exc:  # a cache: a full disk must not fail the read asking
            log.warning("upstream status of %s not recorded: %s", tx_id, exc)

    def _record_upstream_status(self, tx_id, height, indep_hash, confirmations, checked_at) -> None:
        with self._lock:  # a cache of the upstream's answer: re-asked when lost, so no fsync needed
            self._digest_db.execute(
                "INSERT INTO upstream_status (id, block_height, block_indep_hash, confirmations, checked_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET block_height = excluded.block_height, "
                "block_indep_hash = excluded.block_indep_hash, confirmations = excluded.confirmations, "
                "checked_at = excluded.checked_at",
                (tx_id, height, indep_hash, confirmations, checked_at),
            )

    def _balance_locked(self, address: str) -> int:
        row = self._db.execute("SELECT winston FROM balances WHERE address = ?", (address,)).fetchone()
        return int(row[0]) if row else 0

    def _set_locked(self, address: str, winston: int, last_tx: str | None = None) -> None:
        self._db.execute(
            "INSERT INTO balances (address, winston) VALUES (?, ?) "
            "ON CONFLICT(address) DO UPDATE SET winston = excluded.winston",
            (address, str(winston)),
        )
        if last_tx is not None:
            self._db.execute("UPDATE balances SET last_tx = ? WHERE address = ?", (last_tx, address))
