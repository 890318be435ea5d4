"""Which bucket a data folder's bucket tables describe, and what happens when it changes.

`bucket_chunks`, `bucket_spans` and `bucket_published` remember what this folder put into
its bucket; they are true only of that bucket. The bucket's identity is a marker object written once into it
(`permastore-bucket`, a random ID, If-None-Match so concurrent first nodes agree on one);
the folder records (endpoint, bucket name, prefix, marker ID) in `bucket_state`.

On open, a marker other than the recorded one (another bucket, or the same name emptied or
replaced: the marker is gone with everything else) or a folder that holds objects and has
no record yet (its first use with a bucket, or a folder from before the record) makes the
tables void for this bucket: the rows of the bucket being left are put aside under its
marker (`<table>_saved`), the rows put aside for the bucket reached (when the folder used it
before) are brought back, and every object held here that is not in it is published again,
so no ID is claimed to be in a bucket that lacks it. Span locations are the only record of
where evicted or learned chunks live: they are never dropped, so going back to a bucket
reads what it held again. An object whose data was only in the old bucket
(evicted from the cache) cannot be: it is logged, stays unpublished, and `fsck` reports it
(`fsck --repair --peer` publishes it from a peer). The same marker reached through another
endpoint or name (a DNS change, an alias) is the same bucket: the record is updated.

On the same bucket, every open also publishes the objects indexed since the last open that
are not in the bucket (`catch_up`: put while the folder was opened without the bucket, or
whose publication failed), looking only past the seq it recorded, so an open stays cheap.
"""

from __future__ import annotations

import json
import logging
import uuid

from permastore.store.bucket import layout
from permastore.store.bucket.storage import BucketError
from permastore.store.errors import StoreError
from permastore.store.index import transaction

log = logging.getLogger("permastore.bucket")

STATE_KEY = "identity"
THROUGH_KEY = "checked_through_seq"  # objects up to this seq were published (or found unpublishable)
MAX_MARKER = 4096
# The tables true of one bucket only, and their columns: those of a bucket left are kept in
# <table>_saved under its marker until the folder is opened on it again.
PER_BUCKET = {"bucket_chunks": "hash", "bucket_spans": "hash, span, offset",
              "bucket_span_members": "span, offset, hash", "bucket_published": "id", "bucket_pending": "id"}  # fmt: skip
SAVED_SCHEMA = "".join(
    f"CREATE TABLE IF NOT EXISTS {table}_saved (marker TEXT NOT NULL, {columns});"
    f"CREATE INDEX IF NOT EXISTS {table}_saved_marker ON {table}_saved(marker);"
    for table, columns in PER_BUCKET.items()
)


def bucket_marker(bucket) -> str:
    """Given a Bucket, return its marker ID, writing the marker first when the bucket has none."""
    key = layout.identity_key(bucket.prefix)
    data = _marker_bytes(bucket, key)
    if data is None:
        mine = json.dumps({"v": 1, "id": uuid.uuid4().hex, "written_by": "permastore"}).encode()
        bucket.storage.put_if_absent(key, mine)  # two first nodes at once: one marker wins
        data = _marker_bytes(bucket, key)
    try:
        marker = json.loads(data[:MAX_MARKER]) if data is not None and len(data) <= MAX_MARKER else None
        if isinstance(marker, dict) and isinstance(marker.get("id"), str) and marker["id"]:
            return marker["id"]
    except ValueError:
        pass
    raise BucketError(f"bucket {bucket.settings.bucket}: {key} is not a permastore bucket marker; "
                      "give permastore a bucket of its own")  # fmt: skip


def _marker_bytes(bucket, key: str) -> bytes | None:
    """The marker object's first MAX_MARKER + 1 bytes (never more: it is no marker past that), or None."""
    data = bucket.storage.get_range(key, 0, MAX_MARKER + 1)
    return None if data is None else bytes(data)


def check_identity(bucket) -> None:
    """Given a Bucket just opened, make the folder's bucket tables true of it (see the module docstring)."""
    conn = bucket.store.db
    here = {"endpoint": bucket.settings.endpoint, "bucket": bucket.settings.bucket, "prefix": bucket.prefix,
            "marker": bucket_marker(bucket)}  # fmt: skip
    row = conn.execute("SELECT value FROM bucket_state WHERE key = ?", (STATE_KEY,)).fetchone()
    recorded = json.loads(row[0]) if row else None
    if recorded == here:
        catch_up(bucket)
        return
    if recorded is not None and recorded.get("marker") == here["marker"]:
        log.info("bucket %s: reached at %s now (was %s at %s)", here["bucket"], here["endpoint"] or "AWS",
                 recorded.get("bucket"), recorded.get("endpoint") or "AWS")  # fmt: skip
    elif recorded is not None or _holds_objects(conn):
        was = (
            f"bucket {recorded['bucket']} at {recorded['endpoint'] or 'AWS'}"
            if recorded
            else "no bucket on record"
        )
        log.warning("bucket %s is not the one this data folder used (%s): publishing what is held here again",
                    here["bucket"], was)  # fmt: skip
        switch_tables(conn, recorded.get("marker") if recorded else None, here["marker"])
        republish(bucket)
        _record(conn, here)
        _mark_through(conn)
        return
    _record(conn, here)
    catch_up(bucket)


def _record(conn, here: dict) -> None:
    with transaction(conn):
        conn.execute("INSERT OR REPLACE INTO bucket_state(key, value) VALUES (?, ?)", (STATE_KEY, json.dumps(here)))


_UNPUBLISHED = "o.data_parent IS NULL AND NOT EXISTS (SELECT 1 FROM bucket_published p WHERE p.id = o.id)"
# Two indexed arms (one OR would scan every object): the objects past the mark, and, as a tx
# published pending keeps its seq when its data completes, a complete one still pending in the
# bucket (its completion's publication failed). CROSS JOIN keeps bucket_pending the outer loop.
CATCH_UP_SQL = (
    f"SELECT o.seq, o.id FROM objects o WHERE o.seq > ? AND {_UNPUBLISHED}"
    f" UNION SELECT o.seq, o.id FROM bucket_pending q CROSS JOIN objects o ON o.id = q.id"
    f" WHERE o.data_complete = 1 AND {_UNPUBLISHED} ORDER BY 1"
)


def catch_up(bucket) -> int:
    """Publish the L1 objects indexed since the last open that are not in the bucket (put while the
    folder was opened without it, or whose publication failed), and every complete tx the bucket
    holds only as pending; return how many were published.

    Cheap on every open: only objects past the seq recorded last time are looked at.
    """
    conn = bucket.store.db
    row = conn.execute("SELECT value FROM bucket_state WHERE key = ?", (THROUGH_KEY,)).fetchone()
    todo = conn.execute(CATCH_UP_SQL, (int(row[0]) if row else 0,)).fetchall()
    published = 0
    for _, id in todo:
        try:
            bucket.publish(id)
            published += 1
        except BucketError:
            raise  # the bucket refuses: the open fails, the next one tries again
        except (StoreError, OSError) as exc:
            log.warning("bucket: %s is not in the bucket and cannot be published: %s", id, exc)
    if todo:
        log.info("bucket: %d object(s) held here were not in the bucket; %d published", len(todo), published)
    _mark_through(conn)
    return published


def _mark_through(conn) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO bucket_state(key, value) SELECT ?, COALESCE(MAX(seq), 0) FROM objects", (THROUGH_KEY,)
        )


def _holds_objects(conn) -> bool:
    return conn.execute("SELECT 1 FROM objects LIMIT 1").fetchone() is not None


def switch_tables(conn, left: str | None, reached: str) -> None:
    """Given the marker of the bucket being left (None: none on record, its rows are void) and of
    the one reached, put the left one's rows aside and bring back those saved for the reached one."""
    with transaction(conn):
        for table, columns in PER_BUCKET.items():
            if left is not None and left != reached:
                conn.execute(f"DELETE FROM {table}_saved WHERE marker = ?", (left,))
                conn.execute(f"INSERT INTO {table}_saved(marker, {columns}) SELECT ?, {columns} FROM {table}", (left,))
            conn.execute(f"DELETE FROM {table}")
            conn.execute(f"INSERT OR IGNORE INTO {table}({columns}) SELECT {columns} FROM {table}_saved WHERE marker = ?",
                         (reached,))  # fmt: skip
            conn.execute(f"DELETE FROM {table}_saved WHERE marker = ?", (reached,))
        conn.execute("DELETE FROM bucket_state")  # learning starts over; the identity is recorded after


def republish(bucket) -> tuple[int, list[str]]:
    """Publish every L1 object held here that the bucket's tables do not list as in it (all of
    them on a bucket new to this folder); return (how many were published, the IDs that could
    not be: their data is not here)."""
    conn = bucket.store.db
    ids = [r[0] for r in conn.execute(
        "SELECT id FROM objects o WHERE data_parent IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM bucket_published p WHERE p.id = o.id) ORDER BY seq"
    ).fetchall()]  # fmt: skip
    published, lost = 0, []
    for index, id in enumerate(ids, 1):
        try:
            bucket.publish(id)
            published += 1
        except BucketError:
            raise  # the bucket refuses: open fails, and the next open tries again (nothing recorded)
        except (StoreError, OSError) as exc:
            lost.append(id)
            log.warning("bucket: %s cannot be published again: %s", id, exc)
        if index % 1000 == 0:
            log.info("bucket: %d of %d objects published again", index, len(ids))
    if lost:
        log.warning("bucket: %d object(s) held their data only in the old bucket and are not in this one "
                    "(fsck lists them; fsck --repair --peer URL publishes them from a peer)", len(lost))  # fmt: skip
    return published, lost
