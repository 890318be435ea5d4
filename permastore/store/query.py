"""Tag / owner / ID queries over the index, newest (or oldest) first, with opaque cursors.

Order key: (height, seq), where a pending object's height counts as above every block.
A cursor is that key of the last item returned, base64url-encoded JSON.
"""

from __future__ import annotations

import json
import sqlite3

from permastore.protocol import b64url
from permastore.protocol.errors import MalformedData
from permastore.store.errors import StoreError
from permastore.store.index import to_infos
from permastore.store.records import PENDING_HEIGHT_KEY, SORT_ORDERS, Page, Query

MAX_PAGE = 1000
_KEY = f"COALESCE(o.height, {PENDING_HEIGHT_KEY})"


class InvalidQuery(StoreError, ValueError):
    """A query with a bad cursor, page size, or sort order."""


def encode_cursor(height_key: int, seq: int) -> str:
    """Given the order key of an item, return the cursor that continues after it."""
    return b64url.encode(json.dumps([height_key, seq]).encode())


def decode_cursor(cursor: str) -> tuple[int, int]:
    """Given a cursor from a previous page, return its (height_key, seq)."""
    try:
        key, seq = json.loads(b64url.decode(cursor))
        if not (isinstance(key, int) and isinstance(seq, int)):
            raise ValueError
    except (MalformedData, ValueError, TypeError):
        raise InvalidQuery(f"invalid cursor {cursor!r:.60}") from None
    return key, seq


def _text(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _in(column: str, values, params: list) -> str:
    params.extend(values)
    return f"{column} IN ({','.join('?' * len(values))})"


def _filters(q: Query, params: list) -> list[str]:
    where = []
    if q.ids:
        where.append(_in("o.id", list(q.ids), params))
    if q.owners:
        where.append(_in("o.owner_address", list(q.owners), params))
    if q.recipients:
        where.append(_in("o.target", list(q.recipients), params))
    if q.bundled_in:
        parents = [p for p in q.bundled_in if p is not None]
        parts = [_in("o.bundled_in", parents, params)] if parents else []
        if None in q.bundled_in:  # None asks for top-level objects as well
            parts.append("o.bundled_in IS NULL")
        where.append("(" + " OR ".join(parts) + ")")
    for name, values in q.tags:
        params.append(_text(name))
        clause = "EXISTS (SELECT 1 FROM tags t WHERE t.seq = o.seq AND t.name = ?"
        if values:
            clause += " AND " + _in("t.value", [_text(v) for v in values], params)
        where.append(clause + ")")
    if q.min_height is not None:
        where.append("o.height >= ?")
        params.append(int(q.min_height))
    if q.max_height is not None:
        where.append("o.height <= ?")
        params.append(int(q.max_height))
    return where


def run_query(conn: sqlite3.Connection, q: Query) -> Page:
    """Given a connection and a Query, return one Page of ObjectInfo."""
    if q.sort not in SORT_ORDERS:
        raise InvalidQuery(f"sort must be one of {', '.join(SORT_ORDERS)}, got {q.sort!r}")
    if not isinstance(q.first, int) or q.first < 0:
        raise InvalidQuery(f"first must be a non-negative integer, got {q.first!r}")
    first = min(q.first, MAX_PAGE)
    params: list = []
    where = _filters(q, params)
    descending = q.sort == "HEIGHT_DESC"
    if q.after:
        key, seq = decode_cursor(q.after)
        op = "<" if descending else ">"
        where.append(f"({_KEY} {op} ? OR ({_KEY} = ? AND o.seq {op} ?))")
        params += [key, key, seq]
    direction = "DESC" if descending else "ASC"
    sql = f"SELECT o.*, {_KEY} AS height_key FROM objects o"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY height_key {direction}, o.seq {direction} LIMIT ?"
    params.append(first + 1)
    rows = conn.execute(sql, params).fetchall()
    has_next = len(rows) > first
    rows = rows[:first]
    cursor = encode_cursor(rows[-1]["height_key"], rows[-1]["seq"]) if rows else None
    return Page(items=to_infos(conn, rows), next_cursor=cursor, has_next=has_next)
