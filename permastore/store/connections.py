"""The store's connections to its SQLite index: one per thread, plus one shared lookup.

`IndexConnections` owns every connection a Store opens to ``index.sqlite`` and closes them
all with it. Each thread gets its own connection (``db``: rows as sqlite3.Row); chunk
lookups made from the ingest's worker threads share one more, under a lock.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from permastore.store import schema


class IndexConnections:
    """Given the index file, hand out this thread's connection and answer chunk lookups from any thread."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._lookup: sqlite3.Connection | None = None
        self._lookup_lock = threading.Lock()

    def create_schema(self) -> None:
        """Create any missing table or index, then open the shared lookup connection."""
        schema.create_schema(self.db)
        self._lookup = schema.connect(self.path, check_same_thread=False)
        self._remember(self._lookup)

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection to the index."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = schema.connect(self.path)
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            self._remember(conn)
        return conn

    def _remember(self, conn: sqlite3.Connection) -> None:
        with self._all_lock:
            self._all.append(conn)

    def known_chunk(self, address: bytes) -> bool:
        """Given a BLAKE3 address, return True when a committed chunk has it (any thread)."""
        return self.lookup_one("SELECT 1 FROM chunks WHERE hash = ?", (address,)) is not None

    def chunk_sha256(self, address: bytes) -> bytes | None:
        """Given a BLAKE3 address, return the SHA-256 the index holds for that chunk, or None (any thread)."""
        row = self.lookup_one("SELECT sha256 FROM chunks WHERE hash = ?", (address,))
        return None if row is None or row[0] is None else bytes(row[0])

    def lookup_one(self, sql: str, params: tuple = ()) -> tuple | None:
        """Given a read-only query, return its first row (a plain tuple) from the shared lookup
        connection: for threads that must not open their own (ingest workers, bucket reads)."""
        if self._lookup is None:
            raise sqlite3.ProgrammingError("the index is not open")
        with self._lookup_lock:
            return self._lookup.execute(sql, params).fetchone()

    def close(self) -> None:
        """Close every connection opened here (those of threads that are gone close with them)."""
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass  # belongs to a thread that is gone; closed with it
            self._all.clear()
        self._local = threading.local()
        self._lookup = None
