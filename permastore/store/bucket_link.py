"""The store's optional bucket, as the other parts see it: publish, read ahead, cache, learn.

`BucketLink` is built empty (the embedded default: chunk data only in the folder) and
filled at most once, by `Store.open`, with the bucket's parts (permastore.store.bucket:
Bucket, SegmentCache, HeaderLearner, seen here through the Protocols below, so this module
imports none of them); every part that publishes, reads or maps data asks it, so none of
them needs to know whether a bucket is there. It closes the bucket's parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from permastore.store.records import FsckReport, ObjectInfo


class ChunkUploads(Protocol):
    """A put's uploads started while it streams in (bucket.EarlyUploads)."""

    def add(self, address: bytes, chunk: Any) -> None: ...


class BucketPublisher(Protocol):
    """What the store's parts ask of its bucket (bucket.Bucket)."""

    def publish(self, id: str) -> None: ...

    def early_uploads(self) -> ChunkUploads | None: ...

    def discard_early(self, early: Any) -> None: ...

    def fetch_ahead(self, runs: Iterable[list]) -> Iterator[tuple[list, Any]]: ...

    def check(self, report: FsckReport, progress: Any = None) -> None: ...

    def close(self) -> None: ...


class SegmentEviction(Protocol):
    """The folder as a bounded cache of the bucket (bucket.SegmentCache)."""

    def touch(self, segment_ids: set[int]) -> None: ...

    def pin(self, path: Path) -> None: ...

    def trim(self) -> int: ...

    def close(self) -> None: ...


class BucketFollower(Protocol):
    """Learning what other nodes published to the bucket (bucket.HeaderLearner)."""

    def learn(self) -> int: ...

    def follow(self, interval: float) -> None: ...

    def stop(self) -> None: ...


class BucketLink:
    """The bucket of a Store, its segment cache and its learner, or none (every call is then a no-op).

    Set once by Store.open, which builds the bucket's parts (they are given the Store itself).
    """

    def __init__(self) -> None:
        self.bucket: BucketPublisher | None = None
        self.cache: SegmentEviction | None = None
        self.learner: BucketFollower | None = None

    def publish(self, info: ObjectInfo | None) -> ObjectInfo | None:
        """With a bucket, put the object's chunks and header there before it is acknowledged; return info."""
        if info is not None:
            self.publish_id(info.id)
        return info

    def publish_id(self, id: str) -> None:
        """Given a stored object's ID, with a bucket, put its chunks and header there (no-op without one)."""
        if self.bucket is not None:
            self.bucket.publish(id)
            self.trim()

    def early_uploads(self) -> ChunkUploads | None:
        """With a bucket, the uploads a put starts while it streams in (None: none, or importing)."""
        return self.bucket.early_uploads() if self.bucket is not None else None

    def discard_early(self, early: ChunkUploads) -> None:
        """Given the early uploads of a put that failed or was abandoned, forget them (see Bucket.discard_early)."""
        if self.bucket is not None:
            self.bucket.discard_early(early)

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
