"""The store's optional bucket, as the other parts see it: publish, read ahead, cache, learn.

`BucketLink` is built empty (the embedded default: chunk data only in the folder) and
opened at most once, by `Store.open`, with bucket settings; every part that publishes,
reads or maps data asks it, so none of them needs to know whether a bucket is there.
It owns the bucket's parts (permastore.store.bucket: Bucket, SegmentCache, HeaderLearner)
and closes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from permastore.store.reader import ChunkReader
from permastore.store.records import ObjectInfo

if TYPE_CHECKING:
    from permastore.protocol.tx import Transaction
    from permastore.store.bucket.bucket import Bucket, EarlyUploads
    from permastore.store.bucket.cache import SegmentCache
    from permastore.store.bucket.learning import HeaderLearner
    from permastore.store.bucket.settings import BucketSettings
    from permastore.store.bundles import Unbundler
    from permastore.store.connections import IndexConnections
    from permastore.store.segment_catalog import SegmentCatalog


class BucketHost(Protocol):
    """What the bucket's parts (Bucket, SegmentCache, HeaderLearner) use of the Store they are given."""

    segments_dir: Path
    index: IndexConnections  # chunk_sha256 (any thread)
    segments: SegmentCatalog  # path, forget (eviction)
    chunks: ChunkReader  # load: verified bytes to upload
    bundles: Unbundler  # unbundle: a learned bundle's items

    @property
    def db(self) -> sqlite3.Connection: ...

    def info(self, id: str) -> ObjectInfo | None: ...

    def put_tx(self, tx: Transaction, data: Any = None, progress: Any = None) -> ObjectInfo: ...

    def put_item(self, stream: Any, progress: Any = None) -> ObjectInfo: ...

    def trim_cache(self) -> int: ...


class BucketLink:
    """The bucket of a Store and its segment cache, or none (every call is then a no-op)."""

    def __init__(self) -> None:
        self.bucket: Bucket | None = None
        self.cache: SegmentCache | None = None
        self.learner: HeaderLearner | None = None

    def open(self, store: BucketHost, settings: BucketSettings | None | bool, chunks: ChunkReader) -> None:
        """Given the opened store, settings (None: from the environment; False: none) and its chunk
        reader, make the folder a cache of the bucket and learn what the bucket holds."""
        from permastore.store.bucket.settings import BucketSettings

        if settings is None:
            settings = BucketSettings.from_env()
        if not isinstance(settings, BucketSettings):
            return  # False: no bucket; None from the environment: none named
        # Imported here: the embedded default never loads the S3 client.
        from permastore.store.bucket.bucket import Bucket
        from permastore.store.bucket.cache import SegmentCache
        from permastore.store.bucket.learning import HeaderLearner

        self.bucket = Bucket(store, settings)
        self.bucket.open()
        self.cache = SegmentCache(store, settings.cache_size)
        chunks.remote = self.bucket.load_chunk
        self.learner = HeaderLearner(store, self.bucket)
        self.learner.learn()
        self.cache.trim()

    def publish(self, info: ObjectInfo | None) -> ObjectInfo | None:
        """With a bucket, put the object's chunks and header there before it is acknowledged; return info."""
        if self.bucket is not None and info is not None:
            self.bucket.publish(info.id)
            self.trim()
        return info

    def early_uploads(self) -> EarlyUploads | None:
        """With a bucket, the uploads a put starts while it streams in (None: none, or importing)."""
        return self.bucket.early_uploads() if self.bucket is not None else None

    def fetch_ahead(self, runs: Iterable[list]) -> Iterator[tuple[list, Any]]:
        """Given runs of chunk rows, yield (run, fetched): fetched reads a bucket-only chunk ahead, or None."""
        if self.bucket is None:
            return ((run, None) for run in runs)
        return self.bucket.fetch_ahead(runs)

    def touch(self, segment_ids: set[int]) -> None:
        """With a bucket, mark segments as just read (least recently used are evicted first)."""
        if self.cache is not None:
            self.cache.touch(segment_ids)

    def pin(self, path: Path) -> None:
        """With a bucket, never evict this segment file while the store is open (it is mapped)."""
        if self.cache is not None:
            self.cache.pin(path)

    def trim(self) -> int:
        """With a bucket, evict least recently used segments past --cache-size; return bytes freed."""
        return self.cache.trim() if self.cache is not None else 0

    def learn(self) -> int:
        """With a bucket, index the objects other nodes published since the last look; return how many."""
        return self.learner.learn() if self.learner is not None else 0

    def follow(self, interval: float) -> None:
        """With a bucket, keep learning new headers every interval seconds (a thread) until close()."""
        if self.learner is not None:
            self.learner.follow(interval)

    def close(self) -> None:
        if self.learner is not None:
            self.learner.stop()
        if self.bucket is not None:
            self.bucket.close()
        if self.cache is not None:
            self.cache.close()
