"""Making a put durable: ingest the data, then one commit of its chunks and its rows.

Every put follows the same durable order: chunk bytes written -> segment fsync -> one
SQLite transaction (WAL, synchronous=FULL) for the object row, tags and chunk list ->
return. Nothing is acknowledged before its commit, and nothing committed points at bytes
that were not fsynced first. `ObjectCommitter` owns that order; the writers of items and
txs build the rows and call it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from permastore.protocol.tags import Tag
from permastore.store import codec
from permastore.store.bucket_link import BucketLink
from permastore.store.bundles import Unbundler
from permastore.store.connections import IndexConnections
from permastore.store.index import (
    insert_chunk_list,
    insert_object,
    record_chunks,
    record_inline_chunks,
    transaction,
)
from permastore.store.ingest import Ingested, NewChunk, ingest
from permastore.store.object_reader import ObjectReader
from permastore.store.records import ObjectInfo
from permastore.store.segments import PackAppender, PackLock, pack_name

# A pack is sealed and a new one started once it would pass this size.
PACK_LIMIT = 1024 * 1024 * 1024

# Run inside a put's transaction, given its connection: returns the object's seq.
Inside = Callable[[sqlite3.Connection], int]
# Run inside a put's transaction after its object row is in, given the connection and its seq.
AfterInsert = Callable[[sqlite3.Connection, int], Any]


class ObjectCommitter:
    """Given the index, the segments folder, the reader, the unbundler and the bucket link,
    ingest data and commit puts in the durable order; thread-safe (packs are appended under a lock)."""

    def __init__(self, index: IndexConnections, segments_dir: Path, reader: ObjectReader, unbundler: Unbundler,
                 link: BucketLink):  # fmt: skip
        self.index = index
        self.segments_dir = segments_dir
        self.reader = reader
        self.unbundler = unbundler
        self.link = link
        self.pack_limit = PACK_LIMIT  # a pack is sealed once it would pass this size

    def ingest(self, data: Any, want_deep_hash: bool, want_sha256: bool, progress: Callable | None = None) -> Ingested:
        """Given data (bytes or a stream), chunk, hash and write what is new; return what was ingested."""
        early = self.link.early_uploads()  # None without a bucket, or when importing from it
        if early is None:
            return ingest(data, self.segments_dir, self.index.known_chunk, want_deep_hash, want_sha256, progress)
        try:
            ingested = ingest(data, self.segments_dir, self.index.known_chunk, want_deep_hash, want_sha256, progress,
                              on_new_chunk=early.add)  # fmt: skip
        except BaseException:
            self.link.discard_early(early)  # the put failed: its uploads are nobody's to wait on
            raise
        ingested.on_discard = lambda: self.link.discard_early(early)  # a put failing later drops them too
        return ingested

    def publish(self, info: ObjectInfo | None) -> ObjectInfo | None:
        """With a bucket, put the object there before it is acknowledged; return info."""
        return self.link.publish(info)

    def publish_id(self, id: str) -> None:
        """Given a stored object's ID, with a bucket, put it there (no-op without one)."""
        self.link.publish_id(id)

    def finish(self, id: str) -> ObjectInfo | None:
        """Given a just committed object, index the items inside (a bundle) and publish it; return its info."""
        info = self.reader.info(id)
        self.unbundler.unbundle(info)  # indexes the items inside; the parent's info stays as it is
        return self.link.publish(info)

    def commit(self, ingested: Ingested, row: dict, tags: list[Tag], after_insert: AfterInsert | None = None) -> ObjectInfo:
        """Given ingested data and the object's row, make both durable; return the stored info.

        If the ID was committed meanwhile (by another writer), the put is idempotent.
        """
        try:
            if ingested.segment is None:
                self._commit_small(ingested, row, tags, after_insert)
            else:
                self.commit_segment_with(ingested, lambda c: self._insert_all(c, ingested, row, tags, after_insert))
        except sqlite3.IntegrityError:
            ingested.discard()
            existing = self.reader.info(row["id"])
            if existing is None:
                raise
            self.link.publish(existing)
            return existing
        except BaseException:
            ingested.discard()  # nothing committed refers to what this put wrote
            raise
        info = self.finish(row["id"])
        assert info is not None  # committed above
        return info

    def _insert_all(self, conn: sqlite3.Connection, ingested: Ingested, row: dict, tags: list[Tag],
                    after_insert: AfterInsert | None) -> int:  # fmt: skip
        seq = insert_object(conn, row, tags)
        if row.get("data_complete"):
            insert_chunk_list(conn, seq, ingested.chunk_list)
        if after_insert:
            after_insert(conn, seq)
        return seq

    def commit_segment_with(self, ingested: Ingested, inside: Inside) -> int:
        """Register a large put's sealed segment and its chunks, and run ``inside``, in one commit."""
        segment = ingested.segment
        assert segment is not None  # a large put's
        conn = self.index.db
        if segment.size == 0:
            # Every chunk was already stored: the dedicated segment holds nothing.
            segment.discard()
            ingested.segment = None
            with transaction(conn):
                return inside(conn)
        with transaction(conn):
            cursor = conn.execute(
                "INSERT INTO segments(name, kind, committed_size, sealed) VALUES (?, 'object', ?, 1)",
                (segment.name, segment.size),
            )
            segment_id = cursor.lastrowid
            assert segment_id is not None
            record_chunks(conn, segment_id, ingested.new_chunks)
            result = inside(conn)
            if ingested.segment_is_object:
                conn.execute("INSERT INTO segment_objects(segment_id, seq) VALUES (?, ?)", (segment_id, result))
        # Committed: from here on the segment belongs to the store, never to discard().
        ingested.segment = None
        segment.release()
        return result

    def _commit_small(self, ingested: Ingested, row: dict, tags: list[Tag], after_insert: AfterInsert | None) -> int:
        conn = self.index.db
        new_chunks = ingested.new_chunks
        if not new_chunks:
            with transaction(conn):
                return self._insert_all(conn, ingested, row, tags, after_insert)
        return self.store_new_chunks(new_chunks, lambda c: self._insert_all(c, ingested, row, tags, after_insert))

    def store_new_chunks(self, new_chunks: list[NewChunk], inside: Inside) -> int:
        """Store a small put's new chunks and commit them with ``inside``.

        Tiny chunks go into the index in the same transaction: with no pack bytes the
        put costs one fsync (SQLite's WAL at COMMIT), and nothing is visible before it.
        """
        inline = [c for c in new_chunks if c.stored_size <= codec.INLINE_LIMIT]
        packed = [c for c in new_chunks if c.stored_size > codec.INLINE_LIMIT]

        def with_inline(conn: sqlite3.Connection) -> int:
            record_inline_chunks(conn, inline)
            return inside(conn)

        if not packed:
            with transaction(self.index.db) as conn:
                return with_inline(conn)
        with PackLock(self.segments_dir):
            return self._append_to_pack(packed, with_inline)

    def _append_to_pack(self, new_chunks: list[NewChunk], inside: Inside) -> int:
        """Under the pack lock: append chunks to the open pack, fsync, then commit with ``inside``."""
        conn = self.index.db
        incoming = sum(c.stored_size for c in new_chunks)
        pack = conn.execute(
            "SELECT id, name, committed_size FROM segments WHERE kind = 'pack' AND sealed = 0 ORDER BY id DESC LIMIT 1"
        ).fetchone()
        seal_id = None
        if pack is not None and pack["committed_size"] and pack["committed_size"] + incoming > self.pack_limit:
            seal_id, pack = pack["id"], None
        if pack is None:
            # Numbered after the highest (a bucket's cache evicts sealed packs; the open one, the highest, stays).
            count = conn.execute(
                "SELECT COALESCE(MAX(CAST(substr(name, 6, length(name) - 9) AS INTEGER)), 0) FROM segments WHERE kind = 'pack'"
            ).fetchone()[0]
            name, pack_id = pack_name(count + 1), None
        else:
            name, pack_id = pack["name"], pack["id"]
        appender = PackAppender(self.segments_dir, name)
        try:
            for chunk in new_chunks:
                chunk.offset = appender.append(chunk.stored)
            appender.sync()
            with transaction(conn):
                if seal_id is not None:
                    conn.execute("UPDATE segments SET sealed = 1 WHERE id = ?", (seal_id,))
                if pack_id is None:
                    cursor = conn.execute(
                        "INSERT INTO segments(name, kind, committed_size) VALUES (?, 'pack', ?)", (name, appender.size)
                    )
                    pack_id = cursor.lastrowid
                else:
                    conn.execute("UPDATE segments SET committed_size = ? WHERE id = ?", (appender.size, pack_id))
                assert pack_id is not None
                record_chunks(conn, pack_id, new_chunks)
                result = inside(conn)
        finally:
            appender.close()
        if seal_id is not None:
            sealed = conn.execute("SELECT name FROM segments WHERE id = ?", (seal_id,)).fetchone()
            os.chmod(self.segments_dir / sealed["name"], 0o444)
        return result
