"""The storage engine's front door: `Store`, the composition root of the store's parts.

`Store.open` builds every part once, in dependency order, and `close` closes them; the
public API is the parts' methods, delegated here. Each part owns its state and receives
the parts it needs in its constructor (see docs/DESIGN.md, "permastore.store"):

    IndexConnections (index.sqlite: a connection per thread, the shared chunk lookup)
    SegmentCatalog   (segment files by ID: names, read descriptors, inline chunks)
    ChunkReader      (verified chunk bytes)            NodeWallet (the node's key)
    BucketLink       (the optional bucket, its cache and learner)
    ObjectReader     (info, read, read_range, raw_header, item_bytes, query)
    Unbundler        (bundles -> indexed items, refusals)
    ObjectCommitter  (ingest + the durable commit order)
    KnownCopies, TxWriter (put_tx, put_chunk), ItemWriter (put_data, put_item)
    ObjectPaths, WeaveIndex, PartialObjects, ObjectExporter, StoreChecker (fsck)

Every put follows the same durable order (permastore.store.commits): chunk bytes written ->
segment fsync -> one SQLite transaction for the object row, tags and chunk list -> return.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from permastore.protocol import merkle
from permastore.protocol.signers import RsaSigner
from permastore.protocol.tx import Transaction
from permastore.store.bucket_host import BucketHost
from permastore.store.bucket_link import BucketLink
from permastore.store.bundles import Unbundler
from permastore.store.commits import ObjectCommitter
from permastore.store.connections import IndexConnections
from permastore.store.errors import StoreError
from permastore.store.export import ObjectExporter
from permastore.store.fsck import StoreChecker
from permastore.store.items import ItemWriter
from permastore.store.known_copies import KnownCopies
from permastore.store.object_paths import ObjectPaths, remove_stale_views
from permastore.store.object_reader import ObjectReader
from permastore.store.partial import PartialInfo, PartialObjects
from permastore.store.partial_writer import PartialWriter
from permastore.store.reader import ChunkReader
from permastore.store.records import Block, FsckReport, ObjectInfo, Page, Query, WeaveChunk
from permastore.store.segment_catalog import SegmentCatalog
from permastore.store.segments import SEGMENTS_DIR, remove_orphans
from permastore.store.transactions import TxWriter
from permastore.store.wallet_file import NodeWallet
from permastore.store.weave import WeaveIndex

if TYPE_CHECKING:
    from permastore.store.bucket.bucket import Bucket
    from permastore.store.bucket.settings import BucketSettings

WALLET_FILE = "wallet.json"
OPEN_LOCK = ".open.lock"  # shared while a Store is open; exclusive for the first opener's cleanup
INDEX_FILE = "index.sqlite"
VIEWS_DIR = "views"

Progress = Callable[[int], object]


class Store:
    """A data folder opened for reading and writing; safe to share between threads."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.segments_dir = self.root / SEGMENTS_DIR
        self.views_dir = self.root / VIEWS_DIR
        self.index = IndexConnections(self.root / INDEX_FILE)
        self.segments = SegmentCatalog(self.segments_dir, self.index)
        self.chunks = ChunkReader(self.segments)
        self.link = BucketLink()
        self.reader = ObjectReader(self.index, self.chunks, self.link)
        self.bundles = Unbundler(self.index, self.reader)
        self.committer = ObjectCommitter(self.index, self.segments_dir, self.reader, self.bundles, self.link)
        self.known = KnownCopies(self.reader)
        self.txs = TxWriter(self.index, self.committer, self.reader, self.known)
        self.paths = ObjectPaths(self.index, self.reader, self.segments_dir, self.views_dir, self.link)
        self.weave = WeaveIndex(self.index, self.reader)
        self.partials = PartialObjects(self.index, self.segments, self.committer)
        self.exporter = ObjectExporter(self.index, self.reader, self.chunks, self.segments, self.link)
        self.checker = StoreChecker(self.index, self.chunks, self.partials, self.bundles, self.link, self.segments_dir)
        self._bucket: Bucket | None = None
        self.node_wallet = NodeWallet(self.root / WALLET_FILE)
        self.items = ItemWriter(self.committer, self.reader, self.known, self.txs, self.node_wallet)
        self._open_lock = -1

    # -- opening and closing ---------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path | str, bucket: Any = None) -> Store:
        """Given a data folder (created if missing), return the opened Store.

        bucket: BucketSettings, or None for those of the environment ($PERMASTORE_S3_BUCKET...;
        none set: the embedded default, chunk data only in the folder), or False for none.
        """
        store = cls(Path(data_dir))
        try:
            store._open()
            store._open_bucket(bucket)
        except (OSError, sqlite3.Error) as exc:
            store.close()
            raise StoreError(f"cannot open data folder {data_dir}: {exc}") from None
        except BaseException:
            store.close()
            raise
        return store

    def _open(self) -> None:
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        self.views_dir.mkdir(exist_ok=True)
        self.node_wallet.load()
        alone = self._hold_open_lock()
        self.index.create_schema()
        if alone:
            # Only the first opener may delete debris. A writer killed inside COMMIT leaves a
            # commit in the WAL that live connections do not see but that SQLite's recovery
            # (run when the first connection opens) replays: only then is "not committed" final.
            remove_orphans(self.segments_dir, self.segments.committed)
            remove_stale_views(self.views_dir)
        fcntl.flock(self._open_lock, fcntl.LOCK_SH)
        self.bundles.resume()

    def _open_bucket(self, settings: BucketSettings | None | bool) -> None:
        """With bucket settings (None: from the environment; False: none), make the folder a cache
        of the bucket and learn what it holds."""
        # Imported here: the embedded default never loads the S3 client.
        from permastore.store.bucket.settings import BucketSettings

        if settings is None:
            settings = BucketSettings.from_env()
        if not isinstance(settings, BucketSettings):
            return  # False, or no bucket named in the environment: the embedded default
        from permastore.store.bucket.bucket import Bucket
        from permastore.store.bucket.cache import SegmentCache
        from permastore.store.bucket.learning import HeaderLearner

        host: BucketHost = self  # what the bucket's parts may use of the Store
        self._bucket = self.link.bucket = Bucket(host, settings)  # closed with the store even if open() fails
        self._bucket.open()
        cache = self.link.cache = SegmentCache(host, settings.cache_size)
        self.committer.pack_limit = min(self.committer.pack_limit, cache.pack_limit)  # sealed packs are evictable
        self.chunks.remote = self._bucket.load_chunk
        self.chunks.repair = self._bucket.repair_chunk  # from peers, once the node gives some
        self._bucket.check_identity()  # another or an emptied bucket: what is held here is published again
        learner = self.link.learner = HeaderLearner(host, self._bucket)
        learner.learn()
        cache.trim()

    def _hold_open_lock(self) -> bool:
        """Take the store's open lock; return True when no other Store has the folder open."""
        self._open_lock = os.open(self.root / OPEN_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._open_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            fcntl.flock(self._open_lock, fcntl.LOCK_SH)
            return False

    def close(self) -> None:
        """Close every connection and file this Store opened."""
        self.link.close()
        self.index.close()
        self.segments.close()
        if self._open_lock >= 0:
            os.close(self._open_lock)
            self._open_lock = -1

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the node's identity, the index, settings ----------------------------------------

    @property
    def wallet(self) -> dict:
        """The node wallet's JWK."""
        return self.node_wallet.jwk

    @property
    def signer(self) -> RsaSigner:
        """The node wallet's signer (made on first use)."""
        return self.node_wallet.signer

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection to the index."""
        return self.index.db

    @property
    def max_data_size(self) -> int:
        """The largest data_size a tx may claim here (set it on the opened Store)."""
        return self.txs.max_data_size

    @max_data_size.setter
    def max_data_size(self, value: int) -> None:
        self.txs.max_data_size = value

    @property
    def bucket(self) -> Bucket | None:
        """The Bucket when opened on one (permastore.store.bucket); None: the embedded default."""
        return self._bucket

    @property
    def last_bundle_refusals(self) -> list[tuple[str, str]]:
        """The (item ID, reason) pairs refused by the last unbundling of a put (the first 1000)."""
        return self.bundles.last_bundle_refusals

    # -- writing (ItemWriter, TxWriter) -----------------------------------------------------

    def put_data(self, stream: Any, tags: Any = (), content_type: str | None = None, target: bytes | None = None,
                 anchor: bytes | None = None, progress: Progress | None = None) -> ObjectInfo:  # fmt: skip
        """Given plain data, sign it with the node wallet (an L1 tx past one chunk, else an item); return its info."""
        return self.items.put_data(stream, tags, content_type, target, anchor, progress)

    def put_item(self, stream: Any, progress: Progress | None = None) -> ObjectInfo:
        """Given a signed binary ANS-104 item (bytes or stream), verify and store it; return its info."""
        return self.items.put_item(stream, progress)

    def put_tx(self, tx: Transaction, data: Any = None, progress: Progress | None = None) -> ObjectInfo:
        """Given a signed L1 tx and its data (stream, bytes, or None for chunks to come), store it."""
        return self.txs.put_tx(tx, data, progress)

    def put_chunk(self, data_root: bytes, data_size: int, offset: int, chunk: bytes, data_path: bytes) -> None:
        """Given a chunk of a pending L1 tx and its data_path, validate and store it."""
        self.txs.put_chunk(data_root, data_size, offset, chunk, data_path)

    def check_data_size(self, data_size: int) -> None:
        """Given a claimed data size, raise LimitExceeded (a 400) when it is past ``max_data_size``."""
        self.txs.check_data_size(data_size)

    def check_known_tx(self, tx: Transaction, data: Any = None) -> None:
        """Given a verified tx whose ID is stored, raise Conflict (other signed fields) or DataMismatch."""
        self.known.check_known_tx(tx, data)

    # -- reading (ObjectReader, ObjectPaths, ObjectExporter) -----------------------------

    def info(self, id: str) -> ObjectInfo | None:
        """Given an ID, return its ObjectInfo, or None when it is not stored."""
        return self.reader.info(id)

    def read(self, id: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given an ID and a byte range [start, end), yield its bytes, each chunk verified first."""
        return self.reader.read(id, start, end)

    def read_range(self, id: str, start: int, length: int) -> bytes:
        """Given an ID, a start and a length, return those bytes (fewer at the end of the data)."""
        return self.reader.read_range(id, start, length)

    def raw_header(self, id: str) -> bytes:
        """Given an ID, return the binary ANS-104 header (item) or the tx JSON bytes (tx)."""
        return self.reader.raw_header(id)

    def item_bytes(self, id: str) -> Iterator[bytes]:
        """Given a data item ID, yield the whole original item: header, then verified data."""
        return self.reader.item_bytes(id)

    def query(self, q: Query) -> Page:
        """Given a Query, return one Page of matching objects."""
        return self.reader.query(q)

    def object_path(self, id: str, verify: bool = True) -> Path:
        """Given an ID, return a path whose bytes are exactly the object's data (verified once)."""
        return self.paths.object_path(id, verify)

    def copy_to(self, id: str, fd: int, progress: Progress | None = None) -> int:
        """Given an ID and a writable descriptor, write the object's verified data; return the byte count."""
        return self.exporter.copy_to(id, fd, progress)

    # -- bundles, the weave, fsck --------------------------------------------------------

    def refusals(self, id: str | None = None, bundle_id: str | None = None, limit: int = -1) -> list[tuple]:
        """Return recorded refusals as (bundle ID, item ID, reason), oldest first."""
        return self.bundles.refusals(id, bundle_id, limit)

    def weave_size(self) -> int:
        """Return the number of weave bytes given out to L1 txs so far."""
        return self.weave.weave_size()

    def chunk_proofs(self, id: str) -> list[merkle.Proof]:
        """Given an L1 tx ID with data, return one merkle Proof (data_path) per non-empty chunk."""
        return self.weave.chunk_proofs(id)

    def chunk_leaves(self, id: str) -> list[merkle.Chunk]:
        """Given a stored L1 tx with data, return its non-empty chunks (SHA-256 and range)."""
        return self.weave.chunk_leaves(id)

    def chunk_at_weave_offset(self, offset: int) -> WeaveChunk:
        """Given a 0-based weave offset, return the chunk holding it, its data_path and its tx."""
        return self.weave.chunk_at_weave_offset(offset)

    def mine_block(self, timestamp: int | None = None) -> Block:
        """Put every object without a height into a new block; return the block."""
        return self.weave.mine_block(timestamp)

    def block(self, height: int | None = None, indep_hash: str | None = None) -> Block | None:
        """Given a height or an indep_hash, return that block, or None."""
        return self.weave.block(height, indep_hash)

    def current_block(self) -> Block | None:
        """Return the highest block, or None before the first is mined."""
        return self.weave.current_block()

    def fsck(self, progress: Progress | None = None) -> FsckReport:
        """Verify every chunk, every object's chunk list and every segment; return the report."""
        return self.checker.fsck(progress)

    # -- partially held objects (PartialObjects) -------------------------------------------

    def open_partial(self, id: str, kind: str, data_size: int, raw_header: bytes = b"", proof: str = "chunks",
                     bundled_in: str | None = None, leaves: bytes | None = None) -> PartialWriter:  # fmt: skip
        """Given an object to fetch, return its PartialWriter: resumed with what is held, or new."""
        return self.partials.open_partial(id, kind, data_size, raw_header, proof, bundled_in, leaves)

    def partial_info(self, id: str) -> PartialInfo | None:
        """Given an ID, return what is held of it while it is partial, or None."""
        return self.partials.partial_info(id)

    def partial_ids(self) -> list[str]:
        """Return the IDs of every partially held object."""
        return self.partials.partial_ids()

    def held_ranges(self, id: str) -> list[tuple[int, int]]:
        """Given a partially held object, return its durable held ranges as (offset, size), in order."""
        return self.partials.held_ranges(id)

    def partial_header(self, id: str) -> bytes:
        """Given a partial item's ID, return its candidate (unverified) binary header."""
        return self.partials.partial_header(id)

    def read_partial(self, id: str, start: int, end: int) -> Iterator[bytes]:
        """Given a partial object proven chunk by chunk and a span it holds, yield its verified bytes."""
        return self.partials.read_partial(id, start, end)

    def abandon_partial(self, id: str, writer: PartialWriter | None = None) -> None:
        """Given a partial object, drop what is held of it (a tx keeps its verified header)."""
        self.partials.abandon_partial(id, writer)

    # -- the bucket (BucketLink) -----------------------------------------------------------

    def learn_from_bucket(self) -> int:
        """With a bucket, index the objects other nodes published since the last look; return how many."""
        return self.link.learn()

    def follow_bucket(self, interval: float = 2.0) -> None:
        """With a bucket, keep learning new headers every interval seconds (a thread) until close()."""
        self.link.follow(interval)

    def trim_cache(self) -> int:
        """With a bucket, evict least recently used segments past --cache-size; return bytes freed."""
        return self.link.trim()

