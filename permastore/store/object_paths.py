"""Objects as plain file paths (for mmap by llama.cpp) without a second copy.

A large object whose chunks are one contiguous raw run of a dedicated segment
covering the whole file *is* that file; so is one whose segment was written as an
object with the same chunk list (chunks repeated inside a file are written again in
place). Anything else (small objects in packs, objects sharing chunks with others,
bundled items) is materialised once, verified, under ``views/``.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from permastore.store.bucket_link import BucketLink
from permastore.store.connections import IndexConnections
from permastore.store.errors import NotFound
from permastore.store.object_reader import ObjectReader
from permastore.store.segments import fsync_dir, write_all

VIEW_MODE = 0o444


def remove_stale_views(views_dir: Path) -> None:
    """Remove half-written views left by processes that died while writing them."""
    for tmp in views_dir.glob(".*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)  # still alive: its writer may finish
        except (ValueError, ProcessLookupError):
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, owned by someone else


class ObjectPaths:
    """Given the index, the reader, the segments and views folders and the bucket link: ``object_path``.

    Owns the set of IDs whose path this process verified (each is verified once).
    """

    def __init__(self, index: IndexConnections, reader: ObjectReader, segments_dir: Path, views_dir: Path,
                 link: BucketLink):  # fmt: skip
        self.index = index
        self.reader = reader
        self.segments_dir = segments_dir
        self.views_dir = views_dir
        self.link = link
        self._verified: set[str] = set()

    def object_path(self, id: str, verify: bool = True) -> Path:
        """Given an ID, return a path whose bytes are exactly the object's data.

        With verify (the default) every chunk is checked against its BLAKE3 address
        the first time this process hands the path out.
        """
        row = self.reader.row(id)
        if not row["data_complete"]:
            raise NotFound(id, "data of")
        path = self._segment_path_of(row)
        if path is None:
            return self._view_of(row)
        if verify and id not in self._verified:
            for _ in self.reader.read_row(row, 0, row["data_size"]):
                pass  # read_row raises CorruptChunk on the first bad chunk
            self._verified.add(id)
        self.link.pin(path)  # with a bucket: mapped by the caller, never evicted while this Store is open
        return path

    def _segment_path_of(self, row: sqlite3.Row) -> Path | None:
        """The dedicated segment that is byte-for-byte this object, or None."""
        if row["data_parent"] is not None or row["data_size"] == 0:
            return None
        db = self.index.db
        found = db.execute(
            "SELECT COUNT(*) AS n, MIN(k.segment_id) AS lo, MAX(k.segment_id) AS hi,"
            " SUM(k.codec != 0) AS packed, SUM(k.offset != c.offset) AS moved"
            " FROM object_chunks c JOIN chunks k ON k.hash = c.hash WHERE c.seq = ?",
            (row["seq"],),
        ).fetchone()
        if not found["n"] or found["lo"] != found["hi"] or found["packed"]:
            return None
        segment = db.execute(
            "SELECT name, kind, committed_size FROM segments WHERE id = ?", (found["lo"],)
        ).fetchone()
        if segment is None or segment["kind"] != "object" or segment["committed_size"] != row["data_size"]:
            return None
        if found["moved"] and not self._mirrors(found["lo"], row["seq"], found["n"]):
            return None
        return self.segments_dir / segment["name"]

    def _mirrors(self, segment_id: int, seq: int, count: int) -> bool:
        """True when the segment was written as an object with exactly this object's chunk list.

        Needed when chunks repeat inside an object: the index points every repeat at its
        first copy, and only the segment's own object says the repeats were written in place.
        """
        db = self.index.db
        mirror = db.execute("SELECT seq FROM segment_objects WHERE segment_id = ?", (segment_id,)).fetchone()
        if mirror is None:
            return False
        if mirror["seq"] == seq:
            return True
        same = db.execute(
            "SELECT COUNT(*) FROM object_chunks a JOIN object_chunks b"
            " ON b.seq = ? AND b.idx = a.idx AND b.offset = a.offset AND b.size = a.size AND b.hash = a.hash"
            " WHERE a.seq = ?",
            (mirror["seq"], seq),
        ).fetchone()[0]
        return same == count

    def _view_of(self, row: sqlite3.Row) -> Path:
        """Write (once) a verified, read-only copy of the object under views/; return its path."""
        path = self.views_dir / row["id"]
        if path.exists():
            return path
        tmp = self.views_dir / f".{row['id']}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for piece in self.reader.read_row(row, 0, row["data_size"]):
                write_all(fd, piece)
            os.fsync(fd)
            os.fchmod(fd, VIEW_MODE)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, path)
        fsync_dir(self.views_dir)
        return path
