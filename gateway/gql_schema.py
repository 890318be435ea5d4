"""The ar.io / arweave.net GraphQL schema (strawberry), over `store.query`.

Tag names and values are bytes in the store; GraphQL carries them as UTF-8
strings both ways (undecodable bytes show as U+FFFD).
"""

from __future__ import annotations

import enum
import logging
from decimal import Decimal
from typing import Optional

import strawberry
from starlette.concurrency import run_in_threadpool
from strawberry.types import Info

from permastore.protocol import b64url
from permastore.store import Query
from permastore.store.query import encode_cursor
from permastore.store.records import PENDING_HEIGHT_KEY

log = logging.getLogger("gateway.graphql")

MAX_PAGE = 100  # ar.io and arweave.net cap `first` at 100
WINSTON_PER_AR = Decimal(10**12)


def winston_to_ar(winston: str) -> str:
    """Given winston as decimal text, return AR with 12 decimals, as arweave-js ar.winstonToAr does."""
    return f"{Decimal(winston) / WINSTON_PER_AR:.12f}"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


@strawberry.enum
class SortOrder(enum.Enum):
    HEIGHT_ASC = "HEIGHT_ASC"
    HEIGHT_DESC = "HEIGHT_DESC"


@strawberry.enum
class TagOperator(enum.Enum):
    EQ = "EQ"
    NEQ = "NEQ"


@strawberry.input
class TagFilter:
    name: str
    values: list[str]
    op: TagOperator = TagOperator.EQ


@strawberry.input
class BlockFilter:
    min: Optional[int] = None
    max: Optional[int] = None


@strawberry.type
class Owner:
    address: str
    key: str


@strawberry.type
class Amount:
    winston: str
    ar: str


@strawberry.type
class MetaData:
    size: str
    type: Optional[str]


@strawberry.type
class Tag:
    name: str
    value: str


@strawberry.type
class Block:
    id: strawberry.ID
    timestamp: int
    height: int
    previous: strawberry.ID


@strawberry.type
class Bundle:
    id: strawberry.ID


def _amount(winston: str | None) -> Amount:
    winston = winston or "0"
    return Amount(winston=winston, ar=winston_to_ar(winston))


@strawberry.type
class Transaction:
    id: strawberry.ID
    anchor: str
    signature: str
    recipient: str
    owner: Owner
    fee: Amount
    quantity: Amount
    data: MetaData
    tags: list[Tag]
    bundledIn: Optional[Bundle]
    height: strawberry.Private[Optional[int]]

    @strawberry.field
    def block(self, info: Info) -> Optional[Block]:
        if self.height is None:
            return None
        miner = info.context["node"].miner
        found = miner.block_at(self.height)
        return block_of(found) if found is not None else None

    @strawberry.field(deprecation_reason="use bundledIn")
    def parent(self) -> Optional[Bundle]:
        return self.bundledIn


def transaction_of(item) -> Transaction:
    """Given an ObjectInfo, return its GraphQL Transaction."""
    return Transaction(
        id=strawberry.ID(item.id),
        anchor=item.anchor or "",
        signature=b64url.encode(item.signature),
        recipient=item.target or "",
        owner=Owner(address=item.owner_address, key=b64url.encode(item.owner)),
        fee=_amount(item.reward),
        quantity=_amount(item.quantity),
        data=MetaData(size=str(item.data_size), type=item.content_type),
        tags=[Tag(name=_text(tag.name), value=_text(tag.value)) for tag in item.tags],
        bundledIn=Bundle(id=strawberry.ID(item.bundled_in)) if item.bundled_in else None,
        height=item.height,
    )


@strawberry.type
class PageInfo:
    hasNextPage: bool


@strawberry.type
class TransactionEdge:
    cursor: str
    node: Transaction


@strawberry.type
class TransactionConnection:
    pageInfo: PageInfo
    edges: list[TransactionEdge]


def _tag_filters(tags: list[TagFilter] | None) -> list[tuple[bytes, list[bytes]]]:
    filters = []
    for tag in tags or []:
        if tag.op is not TagOperator.EQ:
            raise ValueError("tag filter op NEQ is not supported by this node")
        filters.append((tag.name.encode(), [value.encode() for value in tag.values]))
    return filters


def build_query(ids, owners, recipients, tags, bundled_in, block, first, after, sort) -> Query:
    """Given the GraphQL arguments, return the store Query."""
    if first < 0:
        raise ValueError("first must be 0 or more")
    return Query(
        ids=list(ids or []),
        owners=list(owners or []),
        recipients=list(recipients or []),
        tags=_tag_filters(tags),
        bundled_in=list(bundled_in) if bundled_in is not None else None,
        min_height=block.min if block else None,
        max_height=block.max if block else None,
        first=min(first, MAX_PAGE),
        after=after,
        sort=sort.value,
    )


def cursor_of(item) -> str:
    """Given an ObjectInfo from a query, return the cursor that continues after it."""
    return encode_cursor(item.height if item.height is not None else PENDING_HEIGHT_KEY, item.seq)


def _connection(node, query: Query) -> TransactionConnection:
    page = node.store.query(query)
    edges = []
    for item in page.items:
        edges.append(TransactionEdge(cursor=cursor_of(item), node=transaction_of(item)))
    return TransactionConnection(pageInfo=PageInfo(hasNextPage=page.has_next), edges=edges)


@strawberry.type
class BlockEdge:
    cursor: str
    node: Block


@strawberry.type
class BlockConnection:
    pageInfo: PageInfo
    edges: list[BlockEdge]


def block_of(found) -> Block:
    """Given a store Block, return its GraphQL Block."""
    return Block(id=strawberry.ID(found.indep_hash), timestamp=found.timestamp, height=found.height, previous=strawberry.ID(found.previous))


def _block_connection(node, ids, height: BlockFilter | None, first: int, after: str | None, sort: SortOrder) -> BlockConnection:
    """Given block filters, return one page of blocks by height (cursor: the last height seen)."""
    miner = node.miner
    tip_height, _ = miner.tip()
    low = max(0, height.min if height and height.min is not None else 0)
    high = min(tip_height, height.max if height and height.max is not None else tip_height)
    if after:
        if not after.isdigit():
            raise ValueError("invalid block cursor")
        high, low = (min(high, int(after) - 1), low) if sort is SortOrder.HEIGHT_DESC else (high, max(low, int(after) + 1))
    heights = range(high, low - 1, -1) if sort is SortOrder.HEIGHT_DESC else range(low, high + 1)
    wanted = set(ids or [])
    edges: list[BlockEdge] = []
    has_next = False
    for h in heights:
        found = miner.block_at(h)
        if found is None or (wanted and found.indep_hash not in wanted):
            continue
        if len(edges) == min(first, MAX_PAGE):
            has_next = True
            break
        edges.append(BlockEdge(cursor=str(h), node=block_of(found)))
    return BlockConnection(pageInfo=PageInfo(hasNextPage=has_next), edges=edges)


@strawberry.type
class QueryRoot:
    @strawberry.field
    async def block(self, info: Info, id: Optional[str] = None, height: Optional[int] = None) -> Optional[Block]:
        miner = info.context["node"].miner
        if id is not None:
            found = await run_in_threadpool(miner.block_by_hash, id)
        else:
            found = await run_in_threadpool(miner.block_at, height if height is not None else miner.tip()[0])
        return block_of(found) if found is not None else None

    @strawberry.field
    async def blocks(
        self,
        info: Info,
        ids: Optional[list[str]] = None,
        height: Optional[BlockFilter] = None,
        first: int = 10,
        after: Optional[str] = None,
        sort: SortOrder = SortOrder.HEIGHT_DESC,
    ) -> BlockConnection:
        if first < 0:
            raise ValueError("first must be 0 or more")
        return await run_in_threadpool(_block_connection, info.context["node"], ids, height, first, after, sort)

    @strawberry.field
    async def transaction(self, info: Info, id: strawberry.ID) -> Optional[Transaction]:
        if not b64url.is_id(id):
            raise ValueError("id must be 43 base64url characters")
        found = await run_in_threadpool(info.context["node"].store.info, str(id))
        return transaction_of(found) if found is not None else None

    @strawberry.field
    async def transactions(
        self,
        info: Info,
        ids: Optional[list[strawberry.ID]] = None,
        owners: Optional[list[str]] = None,
        recipients: Optional[list[str]] = None,
        tags: Optional[list[TagFilter]] = None,
        bundledIn: Optional[list[strawberry.ID]] = None,
        block: Optional[BlockFilter] = None,
        first: int = 10,
        after: Optional[str] = None,
        sort: SortOrder = SortOrder.HEIGHT_DESC,
    ) -> TransactionConnection:
        query = build_query(ids, owners, recipients, tags, bundledIn, block, first, after, sort)
        return await run_in_threadpool(_connection, info.context["node"], query)


class QuietSchema(strawberry.Schema):
    """A schema that reports resolver errors to the client only: a bad cursor is not a server fault."""

    def process_errors(self, errors, execution_context=None) -> None:
        for error in errors:
            log.debug("GraphQL error: %s", error.message)


schema = QuietSchema(query=QueryRoot)
