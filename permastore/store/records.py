"""Plain records the store hands out: objects, queries, pages, blocks, fsck reports."""

from __future__ import annotations

from dataclasses import dataclass, field

# Pending objects sort above every mined height, as on Arweave gateways.
PENDING_HEIGHT_KEY = 2**62

SORT_ORDERS = ("HEIGHT_DESC", "HEIGHT_ASC")


@dataclass(frozen=True)
class ObjectInfo:
    """One stored L1 transaction or ANS-104 data item, as indexed.

    target and anchor are base64url strings ('' when absent); for a tx, anchor is last_tx.
    """

    id: str
    kind: str
    format: int | None
    signature_type: int | None
    owner: bytes = field(repr=False)
    owner_address: str
    target: str
    anchor: str
    tags: list
    data_size: int
    data_root: bytes
    content_type: str | None
    quantity: str | None
    reward: str | None
    signature: bytes = field(repr=False)
    bundled_in: str | None
    seq: int
    height: int | None
    block_hash: str | None
    weave_offset: int | None
    data_complete: bool
    created_at: float

    @property
    def last_tx(self) -> str:
        return self.anchor


@dataclass
class Query:
    """A tag/owner/ID query; empty lists mean 'no filter'. tags: [(name, [values])]."""

    ids: list = field(default_factory=list)
    owners: list = field(default_factory=list)
    recipients: list = field(default_factory=list)
    tags: list = field(default_factory=list)
    bundled_in: list | None = None
    min_height: int | None = None
    max_height: int | None = None
    first: int = 10
    after: str | None = None
    sort: str = "HEIGHT_DESC"


@dataclass(frozen=True)
class Page:
    """One page of query results and the cursor that continues after its last item."""

    items: list
    next_cursor: str | None
    has_next: bool


@dataclass(frozen=True)
class Block:
    """A block mined by this node: the L1 txs it holds and its place in the chain."""

    height: int
    indep_hash: str
    previous: str
    timestamp: int
    weave_size: int
    tx_ids: list


@dataclass(frozen=True)
class WeaveChunk:
    """The chunk holding one weave offset: its bytes, its data_path, and its tx."""

    chunk: bytes
    data_path: bytes
    tx_id: str
    tx_data_root: bytes
    tx_data_size: int
    offset_in_tx: int


@dataclass
class FsckReport:
    """Result of checking every stored chunk: ok, and (id, chunk_index, reason) per failure.

    refused: (bundle ID, item ID, reason) of bundle items that were not indexed because they
    failed verification. That is what a stranger sent, not damage to the store: it does not
    make ``ok`` false. A bundle whose unbundling failed as a whole is a failure.
    """

    ok: bool = True
    failures: list = field(default_factory=list)
    objects_checked: int = 0
    chunks_checked: int = 0
    refused: list = field(default_factory=list)  # the first 1000
    refused_total: int = 0
    partial_objects: int = 0  # being fetched: what they hold is checked, the rest is not missing
