"""SQLite index: connection settings and the schema.

WAL with synchronous=FULL: a COMMIT returns only once the WAL is fsynced, which is
what lets `Store` acknowledge an ID right after its commit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from permastore.store import database

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- A segment's committed_size is the end of its last committed write: bytes past it
-- belong to a crashed writer and are never referenced.
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('pack', 'object')),
    committed_size INTEGER NOT NULL,
    sealed INTEGER NOT NULL DEFAULT 0
);

-- A dedicated segment that is byte-for-byte one object's data (repeated chunks written
-- again in place), so that object and any with the same chunk list map it directly.
CREATE TABLE IF NOT EXISTS segment_objects (
    segment_id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL
);

-- Tiny chunks kept inside the index itself (chunks.segment_id = 0, chunks.offset = this id):
-- their bytes commit with the object in the one WAL fsync, with no segment write or fsync.
CREATE TABLE IF NOT EXISTS inline_chunks (
    id INTEGER PRIMARY KEY,
    stored BLOB NOT NULL
);

-- One row per distinct chunk (BLAKE3 of its raw bytes): stored once.
CREATE TABLE IF NOT EXISTS chunks (
    hash BLOB PRIMARY KEY,
    segment_id INTEGER NOT NULL REFERENCES segments(id),
    offset INTEGER NOT NULL,
    stored_size INTEGER NOT NULL,
    size INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    sha256 BLOB
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('tx', 'item')),
    format INTEGER,
    signature_type INTEGER,
    owner BLOB NOT NULL,
    owner_address TEXT NOT NULL,
    target TEXT NOT NULL DEFAULT '',
    anchor TEXT NOT NULL DEFAULT '',
    quantity TEXT,
    reward TEXT,
    signature BLOB NOT NULL,
    data_size INTEGER NOT NULL,
    data_root BLOB NOT NULL DEFAULT x'',
    content_type TEXT,
    bundled_in TEXT,
    data_parent TEXT,
    data_parent_offset INTEGER,
    raw_header BLOB NOT NULL,
    height INTEGER,
    block_hash TEXT,
    weave_offset INTEGER,
    data_complete INTEGER NOT NULL,
    bundle_state TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_owner ON objects(owner_address, seq);
CREATE INDEX IF NOT EXISTS objects_target ON objects(target, seq);
CREATE INDEX IF NOT EXISTS objects_bundled_in ON objects(bundled_in, seq);
CREATE INDEX IF NOT EXISTS objects_height ON objects(height, seq);
-- The query order (records.PENDING_HEIGHT_KEY for pending objects), so pages need no sort.
CREATE INDEX IF NOT EXISTS objects_order ON objects(COALESCE(height, 4611686018427387904), seq);
CREATE INDEX IF NOT EXISTS objects_data_root ON objects(data_root, data_size);
CREATE INDEX IF NOT EXISTS objects_weave ON objects(weave_offset);
CREATE INDEX IF NOT EXISTS objects_bundle_state ON objects(bundle_state);

CREATE TABLE IF NOT EXISTS tags (
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (seq, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_name_value ON tags(name, value, seq);

-- The chunk list of an object whose bytes the store holds itself (not a bundled item).
CREATE TABLE IF NOT EXISTS object_chunks (
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (seq, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS object_chunks_offset ON object_chunks(seq, offset);
CREATE INDEX IF NOT EXISTS object_chunks_hash ON object_chunks(hash);

-- Chunks posted for a pending L1 tx (POST /chunk) before all of its data is here.
CREATE TABLE IF NOT EXISTS pending_chunks (
    data_root BLOB NOT NULL,
    data_size INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (data_root, data_size, offset)
) WITHOUT ROWID;

-- Items of a bundle that were not indexed, and why (bad signature, ID not the index's, a
-- malformed header...). A bundle whose unbundling failed as a whole has its own ID as item_id.
CREATE TABLE IF NOT EXISTS bundle_refusals (
    bundle_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (bundle_id, item_id)
);
CREATE INDEX IF NOT EXISTS bundle_refusals_item ON bundle_refusals(item_id);

-- An object being fetched from peers (permastore.store.partial): its verified header (a tx,
-- whose row in objects stays data_complete = 0) or candidate header (an item, unverified until
-- complete), the dedicated segment being filled at final positions, and how it is proven.
CREATE TABLE IF NOT EXISTS partial_objects (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('tx', 'item')),
    data_size INTEGER NOT NULL,
    raw_header BLOB NOT NULL,
    segment_id INTEGER NOT NULL,
    proof TEXT NOT NULL CHECK (proof IN ('chunks', 'end')),
    bundled_in TEXT,
    leaves BLOB,
    created_at REAL NOT NULL
);

-- Byte ranges of a partial object held in its segment: written, fsynced, then recorded here.
CREATE TABLE IF NOT EXISTS partial_ranges (
    id TEXT NOT NULL,
    offset INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hash BLOB NOT NULL,
    sha256 BLOB,
    PRIMARY KEY (id, offset)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    indep_hash TEXT NOT NULL UNIQUE,
    previous TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    weave_size INTEGER NOT NULL,
    tx_ids TEXT NOT NULL
);
"""


def connect(path: Path, check_same_thread: bool = True) -> sqlite3.Connection:
    """Given the index path, return a connection in WAL mode with FULL sync and the schema in place."""
    conn = database.connect(path, "FULL", check_same_thread=check_same_thread)
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    """Given a connection, create any missing table or index (idempotent)."""
    # executescript runs the whole script; BEGIN..COMMIT inside it makes it one transaction.
    conn.executescript(
        "BEGIN IMMEDIATE;" + SCHEMA + "INSERT OR IGNORE INTO meta(key, value) VALUES ('weave_size', 0); COMMIT;"
    )
