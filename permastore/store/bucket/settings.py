"""Where the bucket is: from the global options (`--s3-endpoint`, `--s3-bucket`, `--cache-size`) or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

ENDPOINT_ENV = "PERMASTORE_S3_ENDPOINT"
BUCKET_ENV = "PERMASTORE_S3_BUCKET"
CACHE_SIZE_ENV = "PERMASTORE_CACHE_SIZE"
# With a bucket and no --cache-size, the local folder keeps up to this much chunk data.
DEFAULT_CACHE_SIZE = 10 * 1024**3


@dataclass(frozen=True)
class BucketSettings:
    """An S3 endpoint URL, a bucket name and the local cache bound in bytes."""

    endpoint: str
    bucket: str
    cache_size: int = DEFAULT_CACHE_SIZE
    prefix: str = ""  # keys live under it (several stores may share one bucket apart)

    @classmethod
    def from_env(cls, environ=None) -> BucketSettings | None:
        """Given the environment, return the settings it names, or None (the embedded default)."""
        environ = os.environ if environ is None else environ
        bucket = environ.get(BUCKET_ENV, "")
        if not bucket:
            return None
        cache = environ.get(CACHE_SIZE_ENV, "")
        return cls(environ.get(ENDPOINT_ENV, ""), bucket, parse_size(cache) if cache else DEFAULT_CACHE_SIZE)


def parse_size(text: str) -> int:
    """Given a size such as 1048576, 100M, 10G (powers of 1024), return it in bytes; ValueError when bad."""
    text = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    for unit, factor in (("K", 1024), ("M", 1024**2), ("G", 1024**3), ("T", 1024**4)):
        if text.endswith(unit):
            text, scale = text[:-1], factor
            break
    if not text.isdigit():
        raise ValueError(f"not a size in bytes: {text!r} (use a number, optionally with K, M, G or T)")
    return int(text) * scale
