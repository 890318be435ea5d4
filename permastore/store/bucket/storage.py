"""The storage interface chunk data and headers are kept through, and its S3 backend.

`ObjectStorage` is all the store needs from a bucket: write a key only when absent, read a
key (whole or a range), list keys after a marker. Keys are opaque strings; values are
bytes. `S3Storage` implements it on any S3-compatible service with obstore (AWS S3, R2,
Ceph, SeaweedFS); credentials and region come from the standard AWS variables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol

from permastore.store.errors import StoreError

# Concurrent requests one S3Storage keeps connections for (uploads use half as many threads).
MAX_CONNECTIONS = 32


class BucketError(StoreError):
    """The bucket could not be reached, or refused a request."""


class ObjectStorage(Protocol):
    """Given keys, store and return bytes; what a bucket (or a folder) must offer."""

    def put_if_absent(self, key: str, data: bytes | bytearray) -> bool:
        """Write data at key unless the key exists; return True when written, False when it was there."""

    def get(self, key: str) -> bytes | None:
        """Return the bytes at key, or None when there is no such key."""

    def get_range(self, key: str, start: int, end: int) -> memoryview | None:
        """Return bytes [start, end) at key (fewer when the object is shorter), or None when there is no such key."""

    def list_after(self, prefix: str, marker: str) -> Iterator[str]:
        """Yield the keys under prefix that sort after marker, in order."""

    def list_sized_after(self, prefix: str, marker: str) -> Iterator[tuple[str, int]]:
        """Yield (key, size in bytes) of the keys under prefix that sort after marker, in order."""

    def put(self, key: str, data: bytes) -> None:
        """Write data at key, replacing what is there (used only to repair a content-addressed key)."""

    def head(self, key: str) -> tuple[int, str | None] | None:
        """Return (size, ETag or None) of the object at key, or None when there is no such key."""


class S3Storage:
    """ObjectStorage on an S3-compatible bucket (obstore: Rust, releases the GIL); thread-safe.

    The bucket must exist (operators create it: `aws s3 mb`, the service's console); its
    absence is one clear BucketError at open.
    """

    def __init__(self, endpoint: str, bucket: str):
        # Imported here: a node without a bucket never loads the S3 client.
        import obstore
        from obstore.store import S3Store

        self.bucket = bucket
        self._obstore = obstore
        options = {"allow_http": True, "pool_max_idle_per_host": str(MAX_CONNECTIONS)}
        retry = {"max_retries": 3, "retry_timeout": _seconds(30)}
        kwargs: dict[str, Any] = {"client_options": options, "retry_config": retry}
        if endpoint:
            kwargs["endpoint"] = endpoint
            kwargs["virtual_hosted_style_request"] = False
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            kwargs["region"] = region
        try:
            self._store = S3Store(bucket, **kwargs)
        except Exception as exc:  # a bad endpoint URL or option: obstore's errors carry the reason
            raise BucketError(f"bucket {bucket}: {_first_line(exc)}") from None

    def ensure_bucket(self) -> None:
        """Check the bucket answers (one LIST); BucketError saying why when it does not."""
        next(self.list_after("", ""), None)

    def _fail(self, action: str, key: str, exc: Exception) -> BucketError:
        return BucketError(f"bucket {self.bucket}: cannot {action} {key}: {_first_line(exc)}")

    def put_if_absent(self, key: str, data: bytes | bytearray) -> bool:
        try:
            # If-None-Match: two nodes writing one key never replace each other's object.
            self._obstore.put(self._store, key, data, mode="create", use_multipart=False)
            return True
        except self._obstore.exceptions.AlreadyExistsError:
            return False
        except self._obstore.exceptions.PreconditionError:
            return False
        except Exception as exc:
            raise self._fail("write", key, exc) from None

    def put(self, key: str, data: bytes) -> None:
        try:
            self._obstore.put(self._store, key, data, use_multipart=False)
        except Exception as exc:
            raise self._fail("write", key, exc) from None

    def head(self, key: str) -> tuple[int, str | None] | None:
        try:
            meta = self._obstore.head(self._store, key)
        except (FileNotFoundError, self._obstore.exceptions.NotFoundError):
            return None
        except Exception as exc:
            raise self._fail("read", key, exc) from None
        return int(meta["size"]), meta.get("e_tag")

    def get(self, key: str) -> bytes | None:
        try:
            return bytes(self._obstore.get(self._store, key).bytes())
        except (FileNotFoundError, self._obstore.exceptions.NotFoundError):
            return None
        except Exception as exc:
            raise self._fail("read", key, exc) from None

    def get_range(self, key: str, start: int, end: int) -> memoryview | None:
        try:
            # obstore's Bytes is Rust memory behind the buffer protocol: no copy here (each chunk's bytes are copied out later, once).
            return memoryview(self._obstore.get_range(self._store, key, start=start, end=end))
        except (FileNotFoundError, self._obstore.exceptions.NotFoundError):
            return None
        except Exception as exc:  # a range past the object's end is one too: the caller reports it short
            raise self._fail("read", key, exc) from None

    def list_after(self, prefix: str, marker: str) -> Iterator[str]:
        return (key for key, _ in self.list_sized_after(prefix, marker))

    def list_sized_after(self, prefix: str, marker: str) -> Iterator[tuple[str, int]]:
        try:
            # obstore lists by path segments: "headers/" is the prefix "headers".
            pages = self._obstore.list(self._store, prefix.rstrip("/") or None, offset=marker or None, chunk_size=1000)
            for page in pages:
                for entry in page:
                    yield entry["path"], int(entry["size"])
        except Exception as exc:
            raise self._fail("list", prefix or "/", exc) from None


def _seconds(n: int):
    import datetime

    return datetime.timedelta(seconds=n)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


