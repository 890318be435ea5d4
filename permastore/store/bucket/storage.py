"""The storage interface chunk data and headers are kept through, and its S3 backend.

`ObjectStorage` is all the store needs from a bucket: write a key only when absent, read a
key (whole or a range), list keys after a marker. Keys are opaque strings; values are
bytes. `S3Storage` implements it on any S3-compatible service with boto3 (AWS S3, R2,
Ceph, SeaweedFS); credentials and region come from the standard AWS variables.
"""

from __future__ import annotations

from typing import Iterator, Protocol

from permastore.store.errors import StoreError

# Concurrent requests one S3Storage allows (boto3's pool; uploads use that many threads).
MAX_CONNECTIONS = 32


class BucketError(StoreError):
    """The bucket could not be reached, or refused a request."""


class ObjectStorage(Protocol):
    """Given keys, store and return bytes; what a bucket (or a folder) must offer."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Write data at key unless the key exists; return True when written, False when it was there."""

    def get(self, key: str) -> bytes | None:
        """Return the bytes at key, or None when there is no such key."""

    def list_after(self, prefix: str, marker: str) -> Iterator[str]:
        """Yield the keys under prefix that sort after marker, in order."""

    def put(self, key: str, data: bytes) -> None:
        """Write data at key, replacing what is there (used only to repair a content-addressed key)."""


class S3Storage:
    """ObjectStorage on an S3-compatible bucket (boto3); safe to share between threads."""

    def __init__(self, endpoint: str, bucket: str):
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise BucketError("a bucket needs boto3: pip install 'permastore[s3]'") from None

        self.bucket = bucket
        config = Config(max_pool_connections=MAX_CONNECTIONS, retries={"max_attempts": 3, "mode": "standard"})
        self._client = boto3.session.Session().client("s3", endpoint_url=endpoint or None, config=config)
        self._errors = __import__("botocore.exceptions", fromlist=["ClientError"])

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (a node's first open on a new bucket)."""
        exc = self._errors
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except exc.ClientError as error:
            if _status(error) != 404:
                raise BucketError(f"bucket {self.bucket}: {error}") from None
            try:
                self._client.create_bucket(Bucket=self.bucket)
            except exc.ClientError as error:
                if _code(error) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise BucketError(f"cannot create bucket {self.bucket}: {error}") from None
        except exc.BotoCoreError as error:
            raise BucketError(f"bucket {self.bucket}: {error}") from None

    def put_if_absent(self, key: str, data: bytes) -> bool:
        try:
            # If-None-Match: two nodes writing one key never replace each other's object.
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
            return True
        except self._errors.ClientError as error:
            if _status(error) in (409, 412):
                return False
            raise BucketError(f"cannot write {key} to bucket {self.bucket}: {error}") from None
        except self._errors.BotoCoreError as error:
            raise BucketError(f"cannot write {key} to bucket {self.bucket}: {error}") from None

    def put(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except (self._errors.ClientError, self._errors.BotoCoreError) as error:
            raise BucketError(f"cannot write {key} to bucket {self.bucket}: {error}") from None

    def get(self, key: str) -> bytes | None:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self._errors.ClientError as error:
            if _status(error) == 404:
                return None
            raise BucketError(f"cannot read {key} from bucket {self.bucket}: {error}") from None
        except self._errors.BotoCoreError as error:
            raise BucketError(f"cannot read {key} from bucket {self.bucket}: {error}") from None

    def list_after(self, prefix: str, marker: str) -> Iterator[str]:
        token = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            elif marker:
                kwargs["StartAfter"] = marker
            try:
                page = self._client.list_objects_v2(**kwargs)
            except (self._errors.ClientError, self._errors.BotoCoreError) as error:
                raise BucketError(f"cannot list bucket {self.bucket}: {error}") from None
            for entry in page.get("Contents", ()):
                yield entry["Key"]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return


def _status(error) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _code(error) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
