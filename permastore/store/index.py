"""Rows of the SQLite index: objects, tags, chunk lists, and turning rows into ObjectInfo."""

from __future__ import annotations

import sqlite3
import time

from permastore.protocol import b64url
from permastore.protocol.tags import Tag
from permastore.store import database
from permastore.store.records import ObjectInfo

OBJECT_COLUMNS = (
    "id", "kind", "format", "signature_type", "owner", "owner_address", "target", "anchor",
    "quantity", "reward", "signature", "data_size", "data_root", "content_type", "bundled_in",
    "data_parent", "data_parent_offset", "raw_header", "height", "block_hash", "weave_offset",
    "data_complete", "bundle_state", "created_at",
)  # fmt: skip


def transaction(conn: sqlite3.Connection):
    """Run the block in one write transaction: all of it commits, or none of it."""
    return database.immediate(conn)


def b64_or_empty(value: bytes | None) -> str:
    """Given optional bytes (a target, an anchor), return their base64url, or '' when absent."""
    return b64url.encode(value) if value else ""


def content_type_of(tags) -> str | None:
    """Given tags, return the value of the first Content-Type tag (any case), else None."""
    for tag in tags:
        if tag.name.lower() == b"content-type":
            return tag.value.decode("utf-8", "replace")
    return None


def insert_object(conn: sqlite3.Connection, row: dict, tags) -> int:
    """Given an object row (OBJECT_COLUMNS) and its tags, insert them; return the new seq."""
    row = dict(row)
    row.setdefault("created_at", time.time())
    values = [row.get(name) for name in OBJECT_COLUMNS]
    placeholders = ",".join("?" * len(OBJECT_COLUMNS))
    cursor = conn.execute(f"INSERT INTO objects({','.join(OBJECT_COLUMNS)}) VALUES ({placeholders})", values)
    seq = cursor.lastrowid
    assert seq is not None  # an INSERT's rowid
    conn.executemany(
        "INSERT INTO tags(seq, idx, name, value) VALUES (?, ?, ?, ?)",
        [(seq, index, bytes(tag.name), bytes(tag.value)) for index, tag in enumerate(tags)],
    )
    return seq


def insert_chunk_list(conn: sqlite3.Connection, seq: int, chunk_list) -> None:
    """Given an object's seq and its chunk list [(offset, size, blake3, sha256)], record it."""
    conn.executemany(
        "INSERT INTO object_chunks(seq, idx, offset, size, hash) VALUES (?, ?, ?, ?, ?)",
        [(seq, index, offset, size, address) for index, (offset, size, address, _) in enumerate(chunk_list)],
    )
    # A chunk first stored by a wrapped upload has no SHA-256 yet; L1 proofs need it.
    conn.executemany(
        "UPDATE chunks SET sha256 = ? WHERE hash = ? AND sha256 IS NULL",
        [(sha, address) for (_, _, address, sha) in chunk_list if sha is not None],
    )


# chunks.segment_id of a chunk kept in table inline_chunks (chunks.offset is its row id there).
INLINE_SEGMENT = 0


def record_inline_chunks(conn: sqlite3.Connection, new_chunks) -> None:
    """Inside a write transaction: keep tiny chunks' bytes in the index itself (first writer wins)."""
    for chunk in new_chunks:
        if conn.execute("SELECT 1 FROM chunks WHERE hash = ?", (chunk.hash,)).fetchone():
            continue  # stored meanwhile by another writer: no orphan bytes
        chunk.offset = conn.execute("INSERT INTO inline_chunks(stored) VALUES (?)", (chunk.stored,)).lastrowid
        record_chunks(conn, INLINE_SEGMENT, [chunk])


def record_chunks(conn: sqlite3.Connection, segment_id: int, new_chunks) -> None:
    """Given a segment and the chunks written to it, add their rows (first writer wins)."""
    conn.executemany(
        "INSERT OR IGNORE INTO chunks(hash, segment_id, offset, stored_size, size, codec, sha256)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(c.hash, segment_id, c.offset, c.stored_size, c.size, c.codec, c.sha256) for c in new_chunks],
    )


def object_row(conn: sqlite3.Connection, id: str) -> sqlite3.Row | None:
    """Given an ID, return its objects row or None."""
    return conn.execute("SELECT * FROM objects WHERE id = ?", (id,)).fetchone()


def tags_of(conn: sqlite3.Connection, seqs) -> dict[int, list[Tag]]:
    """Given object seqs, return their tags in order, by seq."""
    seqs = list(seqs)
    found: dict[int, list[Tag]] = {seq: [] for seq in seqs}
    for start in range(0, len(seqs), 500):
        batch = seqs[start : start + 500]
        marks = ",".join("?" * len(batch))
        for seq, name, value in conn.execute(
            f"SELECT seq, name, value FROM tags WHERE seq IN ({marks}) ORDER BY seq, idx", batch
        ):
            found[seq].append(Tag(bytes(name), bytes(value)))
    return found


def to_info(row: sqlite3.Row, tags: list[Tag]) -> ObjectInfo:
    """Given an objects row and its tags, return the ObjectInfo."""
    return ObjectInfo(
        id=row["id"],
        kind=row["kind"],
        format=row["format"],
        signature_type=row["signature_type"],
        owner=bytes(row["owner"]),
        owner_address=row["owner_address"],
        target=row["target"],
        anchor=row["anchor"],
        tags=tags,
        data_size=row["data_size"],
        data_root=bytes(row["data_root"] or b""),
        content_type=row["content_type"],
        quantity=row["quantity"],
        reward=row["reward"],
        signature=bytes(row["signature"]),
        bundled_in=row["bundled_in"],
        seq=row["seq"],
        height=row["height"],
        block_hash=row["block_hash"],
        weave_offset=row["weave_offset"],
        data_complete=bool(row["data_complete"]),
        created_at=row["created_at"],
    )


def to_infos(conn: sqlite3.Connection, rows) -> list[ObjectInfo]:
    """Given objects rows, return their ObjectInfos (tags fetched in one go)."""
    rows = list(rows)
    tags = tags_of(conn, [row["seq"] for row in rows])
    return [to_info(row, tags[row["seq"]]) for row in rows]
