"""Chunk data in an S3-compatible bucket: the durable copy, shared by every node opened on it.

`storage` is the small interface a bucket is reached through (`ObjectStorage`; `S3Storage`
over obstore); `layout` names the keys; `manifest` is the one object per signed header;
`bucket` (`Bucket`) is what a Store calls: publish an object before acknowledging it, load
a chunk (verified by the caller), learn headers other nodes published; `transfer` moves
chunk data in spans (several chunks per request, both ways); `cache` bounds the
local data folder, which becomes a cache of chunk data.
"""

from permastore.store.bucket.settings import BucketSettings

__all__ = ["BucketSettings"]
