"""fsck: read every stored chunk back and check it against its BLAKE3 address."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from permastore.protocol.merkle import chunk_ranges
from permastore.store.bucket_link import BucketLink
from permastore.store.bundles import Unbundler
from permastore.store.connections import IndexConnections
from permastore.store.errors import CorruptChunk, StoreError
from permastore.store.partial import PartialObjects
from permastore.store.reader import ChunkReader
from permastore.store.records import FsckReport

MAX_LISTED_REFUSALS = 1000  # refused items listed in a report (refused_total counts them all)


class StoreChecker:
    """Given the index, the chunk reader, the partial objects, the unbundler, the bucket link and
    the segments folder: ``fsck``."""

    def __init__(self, index: IndexConnections, chunks: ChunkReader, partials: PartialObjects, unbundler: Unbundler,
                 link: BucketLink, segments_dir: Path):  # fmt: skip
        self.index = index
        self.chunks = chunks
        self.partials = partials
        self.unbundler = unbundler
        self.link = link
        self.segments_dir = segments_dir

    def fsck(self, progress: Callable[[int], object] | None = None) -> FsckReport:
        """Verify every chunk, every object's chunk list and every segment; return the report.

        Failures are (object ID, chunk index, reason); chunk index -1 is about the object as a whole.
        """
        report = FsckReport()
        conn = self.index.db
        self._check_segments(report)
        bad_chunks = self._check_chunks(report, progress)
        for address, reason in bad_chunks.items():
            owners = conn.execute(
                "SELECT o.id, c.idx FROM object_chunks c JOIN objects o ON o.seq = c.seq WHERE c.hash = ?",
                (address,),
            ).fetchall()
            for row in owners:
                report.failures.append((row["id"], row["idx"], reason))
        for row in conn.execute("SELECT * FROM objects WHERE data_complete = 1").fetchall():
            report.objects_checked += 1
            problem = self._object_problem(row)
            if problem:
                report.failures.append((row["id"], problem[0], problem[1]))
        self._check_bundles(report)
        self._check_partials(report, progress)
        if self.link.bucket is not None:
            self.link.bucket.check(report, progress)
        report.ok = not report.failures
        return report

    def _check_bundles(self, report: FsckReport) -> None:
        """Report bundles whose unbundling failed (failures) and the items refused in bundles."""
        db = self.index.db
        failed = db.execute(
            "SELECT o.id, r.reason FROM objects o LEFT JOIN bundle_refusals r ON r.bundle_id = o.id"
            " AND r.item_id = o.id WHERE o.bundle_state = 'failed'"
        ).fetchall()
        for row in failed:
            report.failures.append((row["id"], -1, row["reason"] or "unbundling failed"))
        failed_ids = {row["id"] for row in failed}
        report.refused_total = db.execute("SELECT COUNT(*) FROM bundle_refusals").fetchone()[0]
        for bundle_id, item_id, reason in self.unbundler.refusals(limit=MAX_LISTED_REFUSALS + len(failed_ids)):
            if not (bundle_id in failed_ids and item_id == bundle_id) and len(report.refused) < MAX_LISTED_REFUSALS:
                report.refused.append((bundle_id, item_id, reason))
        report.refused_total -= sum(1 for row in failed if row["reason"] is not None)

    def _check_partials(self, report: FsckReport, progress: Callable[[int], object] | None) -> None:
        """Check the held ranges of partially held objects (what they lack yet is not a failure)."""
        for id in self.partials.partial_ids():
            report.partial_objects += 1
            info = self.partials.partial_info(id)
            ranges = self.index.db.execute("SELECT offset, size FROM partial_ranges WHERE id = ?", (id,)).fetchall()
            for r in ranges:
                report.chunks_checked += 1
                try:
                    for _ in self.partials.held_pieces(id, r["offset"], r["offset"] + r["size"]):
                        pass
                except CorruptChunk as exc:
                    report.failures.append((id, -1, exc.reason))
                except (OSError, StoreError) as exc:
                    report.failures.append((id, -1, f"held range at {r['offset']}: {exc}"))
                if progress:
                    progress(r["size"])
            if info is not None and info.held_bytes > info.data_size:
                report.failures.append((id, -1, "held ranges overlap or pass the end of the data"))

    def _check_segments(self, report: FsckReport) -> None:
        for row in self.index.db.execute("SELECT name, committed_size FROM segments").fetchall():
            path = self.segments_dir / row["name"]
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                report.failures.append((row["name"], -1, "segment file is missing"))
                continue
            if size < row["committed_size"]:
                report.failures.append((row["name"], -1, f"segment is {size} bytes, {row['committed_size']} committed"))

    def _check_chunks(self, report: FsckReport, progress: Callable[[int], object] | None) -> dict[bytes, str]:
        bad = {}
        rows = self.index.db.execute(
            "SELECT hash, segment_id, offset AS seg_offset, stored_size, size, codec, -1 AS idx FROM chunks"
            # With a bucket, chunks held only there are read back by bucket.check, once.
            + (" WHERE segment_id != -1" if self.link.bucket is not None else "")
        ).fetchall()
        for row in rows:
            report.chunks_checked += 1
            try:
                self.chunks.load("(chunk)", row, from_bucket=False)
            except CorruptChunk as exc:
                bad[bytes(row["hash"])] = exc.reason
            if progress:
                progress(row["size"])
        return bad

    def _object_problem(self, row: sqlite3.Row) -> tuple[int, str] | None:
        """Given a complete object's row, return (chunk index, reason) when its data is not whole."""
        if row["data_parent"] is not None:
            parent = self.index.db.execute("SELECT data_size FROM objects WHERE id = ?", (row["data_parent"],)).fetchone()
            if parent is None or row["data_parent_offset"] + row["data_size"] > parent["data_size"]:
                return -1, f"parent {row['data_parent']} is missing or too short"
            return None
        chunks = self.index.db.execute(
            "SELECT c.idx, c.offset, c.size, k.hash IS NOT NULL AS present FROM object_chunks c"
            " LEFT JOIN chunks k ON k.hash = c.hash WHERE c.seq = ? ORDER BY c.idx",
            (row["seq"],),
        ).fetchall()
        expected = [(s, e - s) for s, e in chunk_ranges(row["data_size"]) if e > s]
        for chunk in chunks:
            if not chunk["present"]:
                return chunk["idx"], "chunk is missing from the index"
        if [(c["offset"], c["size"]) for c in chunks] != expected:
            return -1, "chunk list does not cover the data"
        return None
