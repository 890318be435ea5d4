"""What the bucket's parts (permastore.store.bucket: Bucket, SegmentCache, HeaderLearner) use of
the Store they are given, declared; `Store` satisfies it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Protocol

from permastore.protocol.tx import Transaction
from permastore.store.bundles import Unbundler
from permastore.store.connections import IndexConnections
from permastore.store.reader import ChunkReader
from permastore.store.records import ObjectInfo
from permastore.store.segment_catalog import SegmentCatalog


class BucketHost(Protocol):
    """The Store as the bucket's parts see it."""

    segments_dir: Path
    index: IndexConnections  # chunk_sha256 (any thread): a bucket chunk checked against its leaf
    segments: SegmentCatalog  # path, forget: eviction
    chunks: ChunkReader  # load: verified bytes to upload
    bundles: Unbundler  # unbundle: the items of a learned bundle

    @property
    def db(self) -> sqlite3.Connection: ...

    def info(self, id: str) -> ObjectInfo | None: ...

    def put_tx(self, tx: Transaction, data: Any = None, progress: Any = None) -> ObjectInfo: ...

    def put_item(self, stream: Any, progress: Any = None) -> ObjectInfo: ...

    def trim_cache(self) -> int: ...
