"""Callers' credentials: API keys bound to a wallet address, and the signed requests already used.

Only a SHA-256 of each key is stored (`data/keys.sqlite`), so a copy of the data folder
does not leak usable keys. A key is shown once, when it is created. A signed request (an
ANS-104 item) is accepted once: its ID is marked used when it is, whether or not the item
was already stored (anyone may post the item to /tx first; that does not use it up).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

from inference.sqlite_file import SqliteFile

KEYS_FILE = "keys.sqlite"
KEY_PREFIX = "psk_"
KEY_BYTES = 32
ADDRESS_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # an Arweave address: b64url of 32 bytes
KEY_PATTERN = re.compile(r"^psk_[A-Za-z0-9_-]{43}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    label TEXT,
    created_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS used_requests (
    item_id TEXT PRIMARY KEY,       -- a signed request accepted as a call's authorisation
    used_at REAL NOT NULL
);
"""


class InvalidKey(ValueError):
    """A key or address that cannot be used (malformed, unknown)."""


def is_address(value: str) -> bool:
    """Given a string, return True when it has the shape of an Arweave address."""
    return bool(ADDRESS_PATTERN.match(value))


def new_key() -> str:
    """Return a fresh random API key."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode()
    return KEY_PREFIX + raw


def key_hash(key: str) -> str:
    """Given an API key, return the hex SHA-256 stored in its place."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore(SqliteFile):
    """API keys of one node. Thread-safe."""

    FILE_NAME = KEYS_FILE
    SCHEMA = SCHEMA

    def create(self, address: str, label: str | None = None) -> str:
        """Given a wallet address, store a new key bound to it; return the key (shown once)."""
        if not is_address(address):
            raise InvalidKey(f"not a wallet address (43 base64url characters): {address!r}")
        key = new_key()
        with self._lock:
            self._db.execute(
                "INSERT INTO api_keys (key_hash, address, label, created_at) VALUES (?, ?, ?, ?)",
                (key_hash(key), address, label, time.time()),
            )
        return key

    def address_for(self, key: str) -> str | None:
        """Given a presented key, return the address it is bound to, or None."""
        if not KEY_PATTERN.match(key):
            return None
        wanted = key_hash(key)
        with self._lock:
            row = self._db.execute(
                "SELECT key_hash, address FROM api_keys WHERE key_hash = ? AND revoked = 0",
                (wanted,),
            ).fetchone()
        # Security: the lookup is by hash, so timing reveals nothing about the key itself;
        # compare_digest guards the final match anyway.
        if row is None or not hmac.compare_digest(row[0], wanted):
            return None
        return row[1]

    def revoke(self, key: str) -> bool:
        """Revoke a key; return True when it existed."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE api_keys SET revoked = 1 WHERE key_hash = ? AND revoked = 0",
                (key_hash(key),),
            )
        return cur.rowcount == 1

    def use_request(self, item_id: str) -> bool:
        """Mark a signed request used; return False when it already was (by this or another process)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO used_requests (item_id, used_at) VALUES (?, ?)", (item_id, time.time()),
            )
        return cur.rowcount == 1

    def release_request(self, item_id: str) -> None:
        """Unmark a signed request whose call was refused before anything was charged or written."""
        with self._lock:
            self._db.execute("DELETE FROM used_requests WHERE item_id = ?", (item_id,))

    def count(self) -> int:
        """Return the number of live keys."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM api_keys WHERE revoked = 0").fetchone()[0]
