"""One small SQLite file in the node's data folder (credit ledger, API keys)."""

from __future__ import annotations

import threading
from pathlib import Path

from permastore.store import database


class SqliteFile:
    """A WAL, synchronous=FULL SQLite file with its schema applied. Thread-safe through `_lock`.

    Subclasses set `FILE_NAME` and `SCHEMA`.
    """

    FILE_NAME = ""
    SCHEMA = ""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = database.connect(self.path, "FULL")  # an acknowledged credit or key survives power loss
        self._db.executescript(self.SCHEMA)

    @classmethod
    def open(cls, data_dir: Path | str):
        """Given the node's data folder, return this file's store (created when missing)."""
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir / cls.FILE_NAME)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()
