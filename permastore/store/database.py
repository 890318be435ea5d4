"""The one way this project opens SQLite: WAL, a busy timeout, autocommit, explicit write transactions.

Every SQLite file of a data folder (the store's index, the gateway's wallet ledger, the
inference credit ledger and key file) is opened here, so they agree on how long a writer
waits for another process and on how a read-then-write is made atomic.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

# A writer waits this long for another process's write (a CLI put beside a running server
# committing a large object's chunk list).
BUSY_TIMEOUT_S = 60.0


def connect(path: Path | str, synchronous: str = "FULL", check_same_thread: bool = False) -> sqlite3.Connection:
    """Given a database file and a synchronous level, return an autocommit connection in WAL mode.

    FULL: a commit is on disk before it returns (anything acknowledged); NORMAL: for caches
    that the next read learns again.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=check_same_thread
    )
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection, lock: threading.Lock | None = None) -> Iterator[sqlite3.Connection]:
    """Run the block in one write transaction (under lock when given): all of it commits, or none.

    IMMEDIATE takes the write lock up front, so a read-then-write cannot interleave with
    another process's write.
    """
    with lock if lock is not None else nullcontext():
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself failed (a full disk): never leave the connection inside
            # a transaction that holds the write lock.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
